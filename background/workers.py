"""The worker model: lanes of background work, worked portal by portal, by any number of
worker threads in any number of processes pointing at one PostgreSQL (one on SQLite).

- The Bitrix24 lane: activity runs (but UniSender's) and the outbox. A worker takes a
  portal's lane (background.lanes.hold: a lease with a short expiry) so that portal's
  calls stay in order and within its limit however many workers run; it works a bounded
  turn and lets go, so a flooded portal delays a quiet one by one turn at most; a portal
  whose bucket is empty is skipped: it yields its lane instead of sleeping on a worker.
- The UniSender lane: UniSender runs and deliveries, never in the way of
  bizproc.event.send, whatever the provider's response time.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from peewee import fn

from activities.portals import B24Settings
from api.clock import utcnow
from api.db import connection
from api.models import ActivityRun, Outbox, Portal
from background import lanes, leases, ratelimit
from background.dispatch import deliver_due
from background.runner import UNISENDER_CODES, run_due
from notifications import delivery

log = logging.getLogger(__name__)

LANE_LEASE_S = leases.LEASE_S  # renewed while the worker lives; a dead one loses them
TURN_ROWS = 50  # runs (their reads one batch), then outbox rows, per portal per turn
SHARED_TURN_ROWS = 10  # the same while other portals wait: a flood never holds up the quiet
YIELD_S = 1.0  # a portal whose next request is further away waits for a later pass
PORTALS_MAX = 1000  # per pass
# A burst of calls (100 runs started at once) wakes an idle worker once, not once a call:
# every idle worker's empty pass cost the one holding the lane its CPU.
COALESCE_S = 0.05


def due_portals(now: datetime) -> list[int]:
    """Portals with Bitrix24 work due, the longest-waiting first, paused ones left out."""
    paused = lanes.paused_ids(lanes.B24, now)
    waiting: dict[int, datetime] = {}
    for model, extra in ((ActivityRun, ActivityRun.code.not_in(UNISENDER_CODES)), (Outbox, None)):
        due = (model.status == "pending") & (model.next_attempt_at <= now) & ~(model.portal.in_(paused))
        if extra is not None:
            due &= extra
        query = (model.select(model.portal, fn.MIN(model.next_attempt_at).alias("since"))
                 .where(due).group_by(model.portal).limit(PORTALS_MAX))
        for row in query.namedtuples():
            waiting[row.portal] = min(waiting.get(row.portal, row.since), row.since)
    return sorted(waiting, key=lambda pid: (waiting[pid], pid))


def b24_turn(portal_id: int, settings: B24Settings, holder: str, *, now: datetime,
             session=None, rows: int = TURN_ROWS) -> int:
    """One worker's turn at one portal: its due runs, then what they queued to send."""
    member_id = Portal.select(Portal.member_id).where(Portal.id == portal_id).scalar()
    if ratelimit.shared().wait_s(member_id) > YIELD_S:
        return 0  # throttled: yield, do not sleep on this worker
    if not lanes.hold(portal_id, lanes.B24, holder, LANE_LEASE_S, now):
        return 0  # another worker has this portal now
    try:
        runs = run_due(settings, now=now, limit=rows, session=session, lane=lanes.B24,
                       portal_id=portal_id)
        # What the runs just queued is due at the wall clock's now: send it in this turn.
        return runs + deliver_due(settings, now=max(now, utcnow()), limit=TURN_ROWS,
                                  session=session, portal_id=portal_id)  # packed: cheap
    finally:
        lanes.let_go(portal_id, lanes.B24, holder)


def b24_pass(settings: B24Settings, holder: str, *, now: datetime | None = None,
             session=None, stopping: threading.Event | None = None) -> int:
    done = 0
    due = due_portals(now or utcnow())
    rows = TURN_ROWS if len(due) == 1 else SHARED_TURN_ROWS
    for portal_id in due:
        if stopping is not None and stopping.is_set():
            break  # a clean stop: nothing half-held, the rest stays due for the next worker
        done += b24_turn(portal_id, settings, holder, now=now or utcnow(), session=session,
                         rows=rows)
    return done


def unisender_pass(settings: B24Settings, config, *, now: datetime | None = None,
                   session=None) -> int:
    now = now or utcnow()
    return (run_due(settings, now=now, session=session, lane=lanes.UNISENDER)
            + delivery.deliver_due(config, now=now, session=session))


class LaneThread(threading.Thread):
    """A worker thread: passes over its lane until stopped, waking at once when kicked."""

    def __init__(self, name: str, work: Callable[[threading.Event], int],
                 may_work: Callable[[], bool], idle_s: float, after: Callable[[], None] | None = None):
        super().__init__(name=name, daemon=True)
        self.work, self.may_work, self.idle_s, self.after = work, may_work, idle_s, after
        self.wake, self.stopping = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            done = self._pass()
            if done and self.after is not None:
                self.after()
            if not done:
                if self.wake.wait(self.idle_s):
                    self.stopping.wait(COALESCE_S)
                self.wake.clear()

    def _pass(self) -> int:
        try:
            with connection():
                return self.work(self.stopping) if self.may_work() else 0
        except Exception:  # the next pass retries; one failure must not end the worker
            log.exception("worker %s: pass failed", self.name)
            return 0

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
