"""One scheduler per database, re-checked on every tick.

PostgreSQL: a session advisory lock on a connection of its own. The server frees it the
moment that session ends, so every tick asks the server whether this session still holds
it; a terminated session means this scheduler stops acting at once. (A session lock needs
a real session: behind a transaction-mode pooler such as PgBouncer's `pool_mode=transaction`
it is meaningless; point the scheduler at PostgreSQL directly or at a session-mode pool.)

SQLite (one machine): an OS file lock (`fcntl.flock`) beside the database file. The kernel
releases it the instant the holder dies, even by SIGKILL, so a restarted scheduler acts at
its first tick. Where no file lock can be had (an in-memory database, a platform without
flock) a lease row the holder renews every tick is the fallback.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from peewee import IntegrityError

from api.clock import utcnow
from api.db import connect, db, is_postgres
from api.models import SchedulerLock

try:
    import fcntl
except ImportError:  # not POSIX: the lease row alone
    fcntl = None

log = logging.getLogger(__name__)

LEASE_S = 90
ADVISORY_KEY = 0x6C6F79616C7479  # "loyalty"
_HELD_SQL = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
             "AND pid = pg_backend_pid() AND objsubid = 1 "
             "AND ((classid::bigint << 32) | objid::bigint) = %s")


def sqlite_path(url: str) -> str | None:
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    return path if path and path != ":memory:" else None


class SchedulerLease:
    def __init__(self, database_url: str, holder: str | None = None):
        self.url = database_url
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._pg = None
        self._fd: int | None = None
        self.held = False

    def acquire(self, now: datetime | None = None) -> bool:
        """Take or keep the lock; call every tick. False: another scheduler acts."""
        if is_postgres():
            held = self._advisory()
        elif fcntl is not None and sqlite_path(self.url):
            held = self._flock()
        else:
            held = self._lease(now or utcnow())
        self._say(held)
        return held

    def _say(self, held: bool) -> None:
        if held and not self.held:
            log.info("scheduler lock taken by %s", self.holder)
        elif self.held and not held:
            log.warning("scheduler lock lost by %s: it stops acting", self.holder)
        self.held = held

    # -- PostgreSQL ----------------------------------------------------------------------------

    def _advisory(self) -> bool:
        if self._pg is not None and self._still_held():
            return True
        self._drop_pg()
        self._pg = connect(self.url)
        self._pg.connect()
        got = self._pg.execute_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()[0]
        if not got:
            self._drop_pg()
        return bool(got)

    def _still_held(self) -> bool:
        """Ask the server: a session it terminated (or a dropped connection) holds nothing."""
        try:
            return self._pg.execute_sql(_HELD_SQL, (ADVISORY_KEY,)).fetchone()[0] == 1
        except Exception:  # the connection is gone: so is the lock
            return False

    def _drop_pg(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except Exception:  # already dead
                pass
            self._pg = None

    # -- SQLite --------------------------------------------------------------------------------

    def _flock(self) -> bool:
        if self._fd is not None:
            return True  # an flock is kept until our process closes it or dies
        fd = os.open(sqlite_path(self.url) + ".scheduler.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, self.holder.encode())  # who holds it, for a person looking
        self._fd = fd
        return True

    def _lease(self, now: datetime) -> bool:
        until = now + timedelta(seconds=LEASE_S)
        try:
            with db.atomic():
                SchedulerLock.create(name="scheduler", holder=self.holder, expires_at=until)
            return True
        except IntegrityError:
            mine_or_lapsed = (SchedulerLock.holder == self.holder) | (SchedulerLock.expires_at < now)
            return SchedulerLock.update(holder=self.holder, expires_at=until).where(
                (SchedulerLock.name == "scheduler") & mine_or_lapsed).execute() == 1

    def release(self) -> None:
        if self._pg is not None:
            self._drop_pg()
        elif self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        elif not is_postgres():
            SchedulerLock.delete().where((SchedulerLock.name == "scheduler")
                                         & (SchedulerLock.holder == self.holder)).execute()
        if self.held:
            log.info("scheduler lock released by %s", self.holder)
        self.held = False
