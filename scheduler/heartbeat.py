"""The scheduler's sign of life: the lock holder stamps a row at every run it makes,
and `flask --app api doctor` reads how long ago that was.

Only the holder writes, so a fresh stamp means "some scheduler is acting on this
database", which is what an operator needs to know (nine idle standbys are not alive).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from api import logs
from api.clock import utcnow
from api.db import connection
from api.models import Heartbeat

NAME = "scheduler"
# The tick runs every 3 s and the daily check every 60 s: two minutes without a stamp
# means no scheduler holds the lock and acts.
STALE_AFTER = timedelta(minutes=2)


def beat(holder: str, job: str, now: datetime | None = None) -> None:
    now = now or utcnow()
    Heartbeat.insert(name=NAME, holder=holder[:100], job=job[:32], beat_at=now).on_conflict(
        conflict_target=[Heartbeat.name],
        update={Heartbeat.holder: holder[:100], Heartbeat.job: job[:32], Heartbeat.beat_at: now},
    ).execute()


def run(job: Callable[[], object], holder: str) -> None:
    """Run one scheduled job under its own run id, stamping the heartbeat first."""
    with logs.run_id(job.__name__):
        with connection():
            beat(holder, job.__name__)
        job()


def last() -> Heartbeat | None:
    return Heartbeat.get_or_none(Heartbeat.name == NAME)


def age(now: datetime | None = None) -> timedelta | None:
    """How long ago the scheduler last acted; None when it never did on this database."""
    row = last()
    return None if row is None else (now or utcnow()) - row.beat_at
