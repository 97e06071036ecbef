"""One scheduler per database.

PostgreSQL: a session advisory lock on a connection of its own, held while the scheduler
lives; the server frees it the moment that process dies. SQLite (one machine, no
sessions to rely on): a lease row the holder renews every tick and others may take
once it has lapsed.
"""
from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from peewee import IntegrityError

from api.clock import utcnow
from api.db import connect, db, is_postgres
from api.models import SchedulerLock

LEASE_S = 90
ADVISORY_KEY = 0x6C6F79616C7479  # "loyalty"


class SchedulerLease:
    def __init__(self, database_url: str, holder: str | None = None):
        self.url = database_url
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._pg = None

    def acquire(self, now: datetime | None = None) -> bool:
        """Take or keep the lock; call every tick. False: another scheduler acts."""
        if is_postgres():
            return self._advisory()
        return self._lease(now or utcnow())

    def _advisory(self) -> bool:
        if self._pg is None:
            self._pg = connect(self.url)
            self._pg.connect()
            got = self._pg.execute_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()[0]
            if not got:
                self._pg.close()
                self._pg = None
            return bool(got)
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
            self._pg.close()
            self._pg = None
        elif not is_postgres():
            SchedulerLock.delete().where((SchedulerLock.name == "scheduler")
                                         & (SchedulerLock.holder == self.holder)).execute()
