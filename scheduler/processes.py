"""`scheduler run --workers N --processes`: one scheduler and N worker processes, one parent.

The parent only supervises. It forks a scheduler process (the singleton jobs, behind the
database lock) and N worker processes (lane threads: background.workers), forks a
replacement for one that dies (at most every RESTART_S), and on SIGTERM or Ctrl-C passes
the signal on and waits while each finishes its turn and frees what it holds. It opens no
database connection of its own, and api.db.release_all runs before every fork, so no
child inherits a PostgreSQL session. PostgreSQL only: on SQLite one embedded worker does
everything (`make run`).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable

from api.db import release_all

log = logging.getLogger(__name__)

RESTART_S = 5.0  # a child that keeps dying is forked again at most this often
STOP_WAIT_S = 45  # a child's clean stop (scheduler.worker.STOP_WAIT_S) and then some


def until_stopped() -> None:
    """Block the calling (main) thread until SIGTERM or SIGINT."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    while not stopping.wait(1.0):
        pass


def serve_lanes(worker) -> None:
    """A worker process: lane threads until told to stop, then a clean stop."""
    worker.start_lanes()
    try:
        until_stopped()
    finally:
        worker.stop()


def serve_scheduler(worker) -> None:
    """The scheduler process: the singleton jobs, no lanes (the workers have them)."""
    try:
        worker.start(blocking=True, lanes=False)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        worker.stop()


class Supervisor:
    """Forks `children` (name -> what the child runs) and keeps them running until stopped."""

    def __init__(self, children: dict[str, Callable[[], None]]):
        self.children = children
        self.pids: dict[int, str] = {}
        self.forked_at: dict[str, float] = {}
        self.stopping = False

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        for name in self.children:
            self._fork(name)
        while self.pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            name = self.pids.pop(pid, None)
            if name is not None and not self.stopping:
                log.error("%s (pid %s) ended with status %s: forking another", name, pid, status)
                self._respawn(name)
        signal.alarm(0)
        log.info("all worker processes stopped")

    def _fork(self, name: str) -> None:
        release_all()  # a child must open sessions of its own, never share the parent's
        self.forked_at[name] = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(name)
        self.pids[pid] = name
        log.info("%s started (pid %s)", name, pid)

    def _child(self, name: str) -> None:
        code = 0
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            signal.signal(signum, signal.SIG_DFL)
        try:
            self.children[name]()
        except BaseException:  # noqa: BLE001 (a child reports and ends; the parent forks another)
            log.exception("%s crashed", name)
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)

    def _respawn(self, name: str) -> None:
        wait_s = self.forked_at[name] + RESTART_S - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)  # a signal meanwhile sets stopping, and no child is forked
        if not self.stopping:
            self._fork(name)

    def _stop(self, signum, frame) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping %s worker process(es)", len(self.pids))
        for pid in list(self.pids):
            _signal(pid, signal.SIGTERM)
        signal.signal(signal.SIGALRM, self._kill)
        signal.alarm(STOP_WAIT_S)

    def _kill(self, signum, frame) -> None:
        for pid, name in list(self.pids.items()):
            log.warning("%s (pid %s) did not stop in %s s: killed", name, pid, STOP_WAIT_S)
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


def run(worker_of: Callable[[], object], processes: int, threads: int = 1) -> None:
    """One scheduler process and `processes` worker processes of `threads` lane threads."""
    def worker_process():
        worker = worker_of()
        worker.workers = threads
        serve_lanes(worker)

    children = {"scheduler": lambda: serve_scheduler(worker_of())}
    children.update({f"worker-{n}": worker_process for n in range(1, processes + 1)})
    Supervisor(children).run()
