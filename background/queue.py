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
from typing import Callable

from api.db import db, is_postgres
from background import leases

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


def claimed(queue: Queue, now: datetime, *, limit: int, where=None) -> list:
    """The due pending rows this worker managed to claim, oldest first.

    One transaction picks up to `limit` due rows and claims them for this thread (the
    claim counts the attempt; background.leases renews it while the worker lives): on PostgreSQL the candidates are read `FOR UPDATE SKIP LOCKED`, so workers
    never queue on each other's rows nor take the same one; on SQLite the transaction
    holds the write lock. Three queries for the lot, not four a row.
    """
    model = queue.model
    free = model.claimed_until.is_null() | (model.claimed_until < now)
    due = (model.status == "pending") & (model.next_attempt_at <= now) & free
    if where is not None:
        due &= where
    with db.atomic():
        query = model.select(model.id).where(due).order_by(model.id).limit(limit)
        if is_postgres():
            query = query.for_update("FOR UPDATE SKIP LOCKED")
        ids = [row.id for row in query]
        if not ids:
            return []
        model.update(claimed_until=now + timedelta(seconds=queue.claim_s), claimed_by=leases.me(),
                     attempts=model.attempts + 1).where(model.id.in_(ids)).execute()
    return list(model.select().where(model.id.in_(ids)).order_by(model.id))


def work_due(queue: Queue, now: datetime, work: Callable, *, limit: int, where=None,
             prepare: Callable[[list], None] | None = None) -> int:
    """Claim and work up to `limit` rows; a crash of one row never stops the others.
    `prepare` sees the rows this worker claimed before any is worked (shared reads)."""
    count = 0
    rows = claimed(queue, now, limit=limit, where=where)
    if prepare is not None and rows:
        prepare(rows)
    for row in rows:
        if row.attempts > queue.attempts_max:
            dead_letter(queue, row, f"попытки исчерпаны ({queue.attempts_max})", now)
        else:
            _work_one(queue, row, work, now)
        count += 1
    return count


def work_due_in_packs(queue: Queue, now: datetime, pack: Callable[[list], list[list]],
                      work: Callable[[list], None], *, limit: int, where=None) -> int:
    """Claim up to `limit` rows, then work them in the packs `pack` makes of them (rows
    that share one request); a crash fails only its own pack."""
    rows = []
    for row in claimed(queue, now, limit=limit, where=where):
        if row.attempts > queue.attempts_max:
            dead_letter(queue, row, f"попытки исчерпаны ({queue.attempts_max})", now)
        else:
            rows.append(row)
    for group in pack(rows):
        _work_one(queue, group, work, now)
    return len(rows)


def _work_one(queue: Queue, row_or_pack, work: Callable, now: datetime) -> None:
    try:
        work(row_or_pack)
    except Exception as exc:  # a bug: counted, logged, and the rows are still accounted for
        if isinstance(row_or_pack, list) and len(row_or_pack) > 1:
            # One bad row must not sink the pack: each goes again alone, the culprit fails.
            log.warning("%s pack crashed (%s): working its rows one by one",
                        queue.model.__name__, type(exc).__name__, exc_info=True)
            for row in row_or_pack:
                _work_one(queue, [queue.model.get_by_id(row.id)], work, now)
            return
        rows = row_or_pack if isinstance(row_or_pack, list) else [row_or_pack]
        log.exception("%s %s crashed", queue.model.__name__, [row.id for row in rows])
        for row in rows:
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
