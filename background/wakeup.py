"""Wake the workers the moment a handler records work, whichever process took the call.

PostgreSQL: the handler sends `NOTIFY loyalty_work` after its commit; every worker process
LISTENs on a connection of its own and wakes its lane threads. SQLite has one embedded
worker, woken in-process by the caller.
"""
from __future__ import annotations

import logging
import select
import threading
from typing import Callable

from api.db import connect, db, is_postgres

log = logging.getLogger(__name__)

CHANNEL = "loyalty_work"
POLL_S = 5.0
RECONNECT_S = 5.0


def notify() -> None:
    """Tell every listening worker there is work (outside a transaction: at once)."""
    if is_postgres():
        db.execute_sql(f"NOTIFY {CHANNEL}")


class Listener(threading.Thread):
    """LISTENs on its own connection and calls `wake` for each notification."""

    def __init__(self, url: str, wake: Callable[[], None]):
        super().__init__(name="wakeup-listener", daemon=True)
        self.url, self.wake = url, wake
        self.stopping = threading.Event()
        self.listening = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._listen()
            except Exception:  # the database went away: the workers still poll every tick
                log.warning("wake-up listener lost its connection; reconnecting", exc_info=True)
                self.listening.clear()
                self.stopping.wait(RECONNECT_S)

    def _listen(self) -> None:
        database = connect(self.url)
        database.connect()
        try:
            conn = database.connection()
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            while not self.stopping.is_set():
                if select.select([conn], [], [], POLL_S) == ([], [], []):
                    continue
                conn.poll()
                if conn.notifies:
                    conn.notifies.clear()
                    self.wake()
        finally:
            database.close()

    def stop(self) -> None:
        self.stopping.set()
