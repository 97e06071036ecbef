"""A wall-clock limit on one webhook attempt.

urllib3's read timeout counts from the last byte, so a receiver that trickles its answer
a byte every few seconds would hold a sender thread (and the pass of every portal's
deliveries waiting on it) for as long as it likes. Each attempt runs `within(seconds)`;
the connection it uses is `watch`ed, and one watchdog thread shuts that socket down when
the attempt outlives its limit, which ends the blocked read with an error at once.
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

TICK_S = 0.2

_local = threading.local()
_lock = threading.Lock()
_live: dict[int, list] = {}  # attempt id -> [deadline (monotonic), socket or None, expired]
_watchdog: threading.Thread | None = None


@contextmanager
def within(seconds: float):
    """Run one attempt; yields a callable telling afterwards whether the limit cut it."""
    attempt = id(object()) ^ threading.get_ident()
    entry = [time.monotonic() + seconds, None, False]
    with _lock:
        _live[attempt] = entry
        _start_watchdog()
    _local.attempt = attempt
    try:
        yield lambda: entry[2]
    finally:
        _local.attempt = None
        with _lock:
            _live.pop(attempt, None)


def watch(sock) -> None:
    """The socket the current attempt talks on (called by the connection classes)."""
    attempt = getattr(_local, "attempt", None)
    with _lock:
        entry = _live.get(attempt)
        if entry is not None:
            entry[1] = sock


def _start_watchdog() -> None:
    global _watchdog
    if _watchdog is None or not _watchdog.is_alive():
        _watchdog = threading.Thread(target=_run, name="webhook-deadline", daemon=True)
        _watchdog.start()


def _run() -> None:
    while True:
        time.sleep(TICK_S)
        now = time.monotonic()
        with _lock:
            late = [entry for entry in _live.values() if entry[0] <= now and not entry[2]]
            for entry in late:
                entry[2] = True
        for entry in late:
            _cut(entry[1])


def _cut(sock) -> None:
    if sock is None:
        return
    try:
        # The plain socket's shutdown, not SSLSocket's: that one drops its SSL object
        # under the reading thread's feet; this makes the read fail cleanly instead.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the attempt ended on its own
