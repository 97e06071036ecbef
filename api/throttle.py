"""Fixed-window counters in the database, so every worker process sees the same count.

`hit` counts one attempt and says how long to wait when the window's limit is passed.
Refused attempts count too: hammering a closed door does not open it sooner. `purge`
(the scheduler, hourly) deletes the windows that have ended, so the table stays the size
of the last hour's callers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import Case, fn

from api.clock import utcnow
from api.db import db
from api.models import Throttle

KEY_MAX_LEN = 200


@dataclass(frozen=True)
class Limit:
    name: str
    count_max: int
    window_s: int


class Throttled(Exception):
    def __init__(self, limit: Limit, retry_after_s: int):
        super().__init__(f"{limit.name}: retry after {retry_after_s} s")
        self.limit, self.retry_after_s = limit, retry_after_s


def hit(limit: Limit, subject: str, now: datetime | None = None) -> None:
    """Count one attempt of `subject` against `limit`; Throttled when over it."""
    now = now or utcnow()
    key = f"{limit.name}:{subject}"[:KEY_MAX_LEN]
    stale = Throttle.window_start <= now - timedelta(seconds=limit.window_s)
    with db.atomic():
        # One upsert: a new window starts at 1, the current one counts up.
        Throttle.insert(key=key, window_start=now, count=1).on_conflict(
            conflict_target=[Throttle.key],
            update={Throttle.count: Case(None, [(stale, 1)], Throttle.count + 1),
                    Throttle.window_start: Case(None, [(stale, now)], Throttle.window_start)},
        ).execute()
        row = Throttle.get(Throttle.key == key)
    if row.count > limit.count_max:
        ends = row.window_start + timedelta(seconds=limit.window_s)
        raise Throttled(limit, max(1, math.ceil((ends - now).total_seconds())))


def purge(limits: list[Limit], now: datetime | None = None, keep_s: int = 86_400) -> int:
    """Delete the windows that have ended (the next `hit` would start them over anyway),
    and anything older than `keep_s` whatever its limit (a renamed one leaves rows)."""
    now = now or utcnow()
    gone = 0
    with db.atomic():
        for limit in limits:
            prefix = f"{limit.name}:"  # compared exactly: `_` in a LIKE would match any char
            gone += Throttle.delete().where(
                (fn.SUBSTR(Throttle.key, 1, len(prefix)) == prefix)
                & (Throttle.window_start <= now - timedelta(seconds=limit.window_s))).execute()
        gone += Throttle.delete().where(
            Throttle.window_start < now - timedelta(seconds=keep_s)).execute()
    return gone
