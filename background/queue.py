"""Rows that wait to be worked on (activity runs, the outbox): find the due ones and
claim each before working on it, so two workers racing never take the same row.

Every outcome of working a row ends in one of three places, whatever happened: done,
due again later (a failure that counted toward `attempts_max`, or a throttle that did
not), or failed: a dead letter a person sees on the Health page and may retry. An
exception nobody expected is such a failure too; it never leaves a row claimed forever
or lets it run past its limit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterator

from api.db import db, is_postgres

log = logging.getLogger(__name__)
ERROR_MAX = 1000


def backoff(attempts: int, *, first_s: int, max_s: int) -> timedelta:
    """Doubling waits: first_s, 2×, 4×… capped at max_s."""
    return timedelta(seconds=min(first_s * 2 ** max(attempts - 1, 0), max_s))


@dataclass(frozen=True)
class Queue:
    """One table of work and its limits."""

    model: type
    claim_s: int
    attempts_max: int
    first_s: int
    max_s: int
    error_field: str = "last_error"
    # Called for a row that just became a dead letter (e.g. a run still answers its workflow).
    on_dead: Callable | None = field(default=None, compare=False)

    def backoff(self, attempts: int) -> timedelta:
        return backoff(attempts, first_s=self.first_s, max_s=self.max_s)


def claimed(queue: Queue, now: datetime, *, limit: int, where=None) -> Iterator:
    """Yield the due pending rows this worker managed to claim, oldest first.

    A claim is a conditional update (pending, unclaimed or its claim lapsed) that also
    counts the attempt; whoever loses the race updates 0 rows and moves on. On PostgreSQL
    the candidates are read `FOR UPDATE SKIP LOCKED`, so workers never queue on each
    other's rows.
    """
    model = queue.model
    for _ in range(limit):
        row_id = _claim_one(model, now, queue.claim_s, where)
        if row_id is None:
            return
        yield model.get_by_id(row_id)


def _claim_one(model, now: datetime, claim_s: int, where) -> int | None:
    free = model.claimed_until.is_null() | (model.claimed_until < now)
    due = (model.status == "pending") & (model.next_attempt_at <= now) & free
    if where is not None:
        due &= where
    with db.atomic():
        query = model.select(model.id).where(due).order_by(model.id).limit(1)
        if is_postgres():
            query = query.for_update("FOR UPDATE SKIP LOCKED")
        row = query.first()
        if row is None:
            return None
        taken = model.update(claimed_until=now + timedelta(seconds=claim_s),
                             attempts=model.attempts + 1).where(
            (model.id == row.id) & (model.status == "pending") & free).execute()
    return row.id if taken == 1 else None  # lost a race (SQLite has none): next pass


def work_due(queue: Queue, now: datetime, work: Callable, *, limit: int, where=None) -> int:
    """Claim and work up to `limit` rows; a crash of one row never stops the others."""
    count = 0
    for row in claimed(queue, now, limit=limit, where=where):
        if row.attempts > queue.attempts_max:
            dead_letter(queue, row, f"попытки исчерпаны ({queue.attempts_max})", now)
        else:
            _work_one(queue, row, work, now)
        count += 1
    return count


def _work_one(queue: Queue, row, work: Callable, now: datetime) -> None:
    try:
        work(row)
    except Exception as exc:  # a bug: counted, logged, and the row is still accounted for
        log.exception("%s %s crashed (attempt %s)", queue.model.__name__, row.id, row.attempts)
        failed(queue, row, f"внутренняя ошибка: {type(exc).__name__}", now)


def failed(queue: Queue, row, reason: str, now: datetime) -> None:
    """A failure that counts: due again after the backoff, or a dead letter at the limit."""
    if row.attempts >= queue.attempts_max:
        return dead_letter(queue, row, reason, now)
    model = queue.model
    model.update(**{queue.error_field: reason[:ERROR_MAX]}, next_attempt_at=now + queue.backoff(
        row.attempts), claimed_until=None).where(model.id == row.id).execute()


def dead_letter(queue: Queue, row, reason: str, now: datetime) -> None:
    model = queue.model
    model.update(**{queue.error_field: reason[:ERROR_MAX]}, status="failed",
                 claimed_until=None).where(model.id == row.id).execute()
    log.warning("%s %s is a dead letter after %s attempt(s): %s", model.__name__, row.id,
                row.attempts, reason)
    if queue.on_dead is not None:
        queue.on_dead(model.get_by_id(row.id), now)


def later(queue: Queue, row, reason: str, retry_at: datetime) -> None:
    """Due again at `retry_at` without spending an attempt: throttled, or the portal paused
    its lane. `throttles` counts these so the pacing can cap them."""
    model = queue.model
    model.update(**{queue.error_field: reason[:ERROR_MAX]}, next_attempt_at=retry_at,
                 attempts=model.attempts - 1, throttles=model.throttles + 1,
                 claimed_until=None).where(model.id == row.id).execute()
