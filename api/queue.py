"""Rows that wait to be worked on (activity runs, the outbox): find the due ones and
claim each before working on it, so two workers racing never take the same row."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Iterator


def backoff(attempts: int, *, first_s: int, max_s: int) -> timedelta:
    """Doubling waits: first_s, 2×, 4×… capped at max_s."""
    return timedelta(seconds=min(first_s * 2 ** max(attempts - 1, 0), max_s))


def due(model, now: datetime, portal=None):
    """The pending rows whose time has come (of one portal when given), oldest first."""
    query = model.select(model.id).where((model.status == "pending")
                                         & (model.next_attempt_at <= now))
    return query if portal is None else query.where(model.portal == portal)


def claimed(model, now: datetime, *, limit: int, claim_s: int, portal=None) -> Iterator:
    """Yield the due pending rows this worker managed to claim, oldest first.

    A claim is a conditional update (pending, unclaimed or its claim lapsed) that also
    counts the attempt; whoever loses the race updates 0 rows and moves on.
    """
    for row in list(due(model, now, portal).order_by(model.id).limit(limit)):
        free = model.claimed_until.is_null() | (model.claimed_until < now)
        taken = model.update(claimed_until=now + timedelta(seconds=claim_s),
                             attempts=model.attempts + 1).where(
            (model.id == row.id) & (model.status == "pending") & free).execute()
        if taken == 1:
            yield model.get_by_id(row.id)


def work_due(model, now: datetime, work: Callable, *, limit: int, claim_s: int,
             portal=None) -> int:
    count = 0
    for row in claimed(model, now, limit=limit, claim_s=claim_s, portal=portal):
        work(row)
        count += 1
    return count
