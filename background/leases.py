"""Claims and lanes that lapse within seconds of their worker's death, never while it lives.

A claimed row (an activity run, an outbox row) carries `claimed_by`: the worker thread
that took it, named `host:pid/thread`. The claim and the lane leases last LEASE_S only;
a keeper thread in each worker process renews everything its threads hold every RENEW_S.
So a worker killed by SIGKILL or a power cut loses its rows and lanes LEASE_S after its
last renewal, while a slow one (a portal that takes seconds to answer) keeps them.

Before a send, the sender checks its rows are still its own (`fence`): a claim that
lapsed while its process stalled (the database was away) may have gone to another
worker, and then this one must not send them too. The fence also renews the claim for
LEASE_S, longer than a request may take (the Bitrix24 client's timeout is 10 s), so a
send that started under a claim ends under it.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta

from peewee import fn

from api.clock import utcnow
from api.db import connection
from api.models import ActivityRun, Outbox, PortalLane

log = logging.getLogger(__name__)

LEASE_S = 15  # a dead worker's rows and lanes are free again within this
RENEW_S = 3  # the keeper's beat: several renewals fit in one lease
CLAIMED = (ActivityRun, Outbox)
HOST_MAX, THREAD_MAX = 60, 30  # `host:pid/thread` fits the columns' 100 characters


def process() -> str:
    """This process's name among the workers (looked up each time: a fork has a new pid)."""
    return f"{socket.gethostname()[:HOST_MAX]}:{os.getpid()}"


def me() -> str:
    """The calling thread's name among the workers: what its claims and lanes carry."""
    return f"{process()}/{threading.current_thread().name[:THREAD_MAX]}"


def _mine(field, owner: str):
    """`field` names a thread of process `owner` (a prefix test both databases know)."""
    prefix = f"{owner}/"
    return fn.SUBSTR(field, 1, len(prefix)) == prefix


def renew(owner: str | None = None, now: datetime | None = None) -> int:
    """Extend every live claim and lane lease of process `owner`; returns how many."""
    owner, now = owner or process(), now or utcnow()
    until = now + timedelta(seconds=LEASE_S)
    count = 0
    for model in CLAIMED:
        count += model.update(claimed_until=until).where(
            _mine(model.claimed_by, owner) & (model.status == "pending")
            & (model.claimed_until > now)).execute()
    count += PortalLane.update(lease_until=until).where(
        _mine(PortalLane.holder, owner) & (PortalLane.lease_until > now)).execute()
    return count


def fence(model, ids: list[int], now: datetime | None = None) -> set[int]:
    """Of `ids`, the rows still claimed by this thread, their claims renewed for LEASE_S.
    A row missing from the answer was taken by another worker: do not send it."""
    if not ids:
        return set()
    until = (now or utcnow()) + timedelta(seconds=LEASE_S)
    mine = (model.id.in_(ids)) & (model.claimed_by == me()) & (model.status == "pending")
    model.update(claimed_until=until).where(mine).execute()
    return {row.id for row in model.select(model.id).where(mine)}


class Keeper(threading.Thread):
    """Renews this process's claims and lanes every RENEW_S until stopped."""

    def __init__(self):
        super().__init__(name="lease-keeper", daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        owner = process()
        while not self.stopping.wait(RENEW_S):
            try:
                with connection():
                    renew(owner)
            except Exception:  # the database is away: the fence keeps sends honest meanwhile
                log.warning("could not renew the worker's claims", exc_info=True)

    def stop(self) -> None:
        self.stopping.set()


_keeper: Keeper | None = None
_guard = threading.Lock()


def start_keeper() -> None:
    """One keeper per process (a forked child starts its own)."""
    global _keeper
    with _guard:
        if _keeper is None or not _keeper.is_alive():  # a fork's copy is not alive
            _keeper = Keeper()
            _keeper.start()


def stop_keeper() -> None:
    global _keeper
    with _guard:
        if _keeper is not None:
            _keeper.stop()
            _keeper = None


@contextmanager
def kept():
    """Renew claims for the block (a one-off pass, `scheduler run-once outbox`)."""
    running = _keeper is not None and _keeper.is_alive()
    if not running:
        start_keeper()
    try:
        yield
    finally:
        if not running:
            stop_keeper()


def release(owner: str | None = None) -> int:
    """A clean stop, after every thread of `owner` has finished: what it still holds is
    free at once, for another worker, rather than when the lease lapses."""
    owner = owner or process()
    count = 0
    for model in CLAIMED:
        count += model.update(claimed_until=None).where(
            _mine(model.claimed_by, owner) & (model.status == "pending")
            & model.claimed_until.is_null(False)).execute()
    count += PortalLane.update(holder=None, lease_until=None).where(
        _mine(PortalLane.holder, owner)).execute()
    return count
