"""Many workers, many portals: claims that never send a row twice, one worker per portal's
lane at a time (its calls in order and within its limit), a dead worker's lanes and claims
taken over, and a flooded portal that does not delay a quiet one."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import timedelta

import pytest
import responses
from b24fake import FakePortal

from activities.portals import B24Settings
from api.clock import utcnow
from api.db import connection
from api.models import ActivityRun, Outbox, Portal
from background.outbox import enqueue
from background import lanes, leases, queue, ratelimit, workers
from background import dispatch

RATE_PER_S, BURST = 20.0, 3


class TrackedPortal(FakePortal):
    """A fake portal that remembers when each request came and how many overlapped."""

    def __init__(self, rsps, endpoint, response_s=0.01):
        super().__init__(rsps, endpoint=endpoint)
        self.response_s = response_s  # a response time, so overlapping workers would show
        self.guard = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.stamps: list[float] = []

    def _http(self, request):
        with self.guard:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.stamps.append(time.monotonic())
        try:
            time.sleep(self.response_s)
            return super()._http(request)
        finally:
            with self.guard:
                self.in_flight -= 1


@pytest.fixture
def portals(app, monkeypatch):
    monkeypatch.setattr(ratelimit, "DEFAULT_LIMITER",
                        ratelimit.RateLimiter(rate_per_s=RATE_PER_S, burst=BURST))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        found = []
        for n in range(3):
            endpoint = f"https://p{n}.bitrix24.com/rest/"
            portal = Portal.create(member_id=f"member-{n}", client_endpoint=endpoint,
                                   access_token="access-1", refresh_token="refresh-1",
                                   status="active")
            found.append((portal, TrackedPortal(rsps, endpoint)))
        yield found


def event_sends(portal, count):
    for n in range(count):
        enqueue(portal, f"run:{portal.id}:{n}", {"event_send": ("bizproc.event.send", {
            "EVENT_TOKEN": f"{portal.member_id}|{n:03d}", "RETURN_VALUES": {"Success": "Y"}})})


def run_workers(app, count: int, until, seconds=60):
    settings = B24Settings.from_config(app.config)
    stop = threading.Event()

    def loop(name):
        with connection():
            while not stop.is_set():
                workers.b24_pass(settings, name)

    threads = [threading.Thread(target=loop, args=(f"worker-{n}",)) for n in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(30)


def test_workers_never_send_twice_and_keep_each_portals_calls_in_order_and_limit(app, portals):
    for portal, _ in portals:
        event_sends(portal, 120)
    run_workers(app, 3, lambda: Outbox.select().where(Outbox.status == "sent").count() == 360)
    assert Outbox.select().where(Outbox.status == "sent").count() == 360
    for portal, fake in portals:
        tokens = [p["EVENT_TOKEN"] for p in fake.sent("bizproc.event.send")]
        assert tokens == [f"{portal.member_id}|{n:03d}" for n in range(120)]  # once each, in order
        assert fake.most_in_flight == 1  # one worker at a time holds a portal's lane
        assert len(fake.stamps) == 3  # 50 rows a turn, packed into one request
        for i, first in enumerate(fake.stamps):
            for j in range(i + 1, len(fake.stamps)):
                allowed = BURST + RATE_PER_S * (fake.stamps[j] - first) + 0.5
                assert j - i + 1 <= allowed, "over the portal's rate limit"


def test_a_worker_killed_mid_batch_loses_its_lane_and_claims_within_seconds(app, portals):
    (portal, fake), *_ = portals
    event_sends(portal, 65)
    now = utcnow()
    # A worker took the lane and a pack of rows, then died before sending (SIGKILL, power):
    # nobody renews what it held.
    assert lanes.hold(portal.id, lanes.B24, "dead-worker", workers.LANE_LEASE_S, now)
    taken = list(queue.claimed(dispatch.OUTBOX, now, limit=50))
    settings = B24Settings.from_config(app.config)
    assert workers.b24_pass(settings, "survivor", now=now) == 0  # the lane is still leased
    later = now + timedelta(seconds=leases.LEASE_S + 1)
    assert workers.b24_pass(settings, "survivor", now=later) == 50  # lane and claims lapsed
    assert workers.b24_pass(settings, "survivor", now=later) == 15
    tokens = [p["EVENT_TOKEN"] for p in fake.sent("bizproc.event.send")]
    assert sorted(tokens) == [f"{portal.member_id}|{n:03d}" for n in range(65)]
    assert len(taken) == 50 and Outbox.select().where(Outbox.status == "sent").count() == 65


def test_a_flooded_portal_does_not_delay_a_quiet_one(app, portals):
    (flooded, flood_fake), (quiet, quiet_fake), _ = portals
    flood_fake.add_contact(42)
    quiet_fake.add_contact(42)
    ActivityRun.insert_many([_run(flooded, n) for n in range(500)]).execute()
    ActivityRun.insert(_run(quiet, 0)).execute()
    settings = B24Settings.from_config(app.config)
    workers.b24_pass(settings, "worker-0")
    assert len(quiet_fake.sent("bizproc.event.send")) == 1  # answered in the first pass
    waiting = ActivityRun.select().where((ActivityRun.portal == flooded)
                                         & (ActivityRun.status == "pending")).count()
    assert waiting == 500 - workers.SHARED_TURN_ROWS


def _run(portal, n):
    return {"portal": portal, "token_hash": f"h{portal.id}-{n}", "event_token": f"t{n}",
            "code": "loyalty_card_info", "document_id": json.dumps(["crm", "CCrmDocumentContact",
                                                                    "CONTACT_42"]),
            "properties": "{}", "created_at": utcnow() - timedelta(seconds=60 if n else 1)}


def test_the_reads_of_a_portals_runs_share_one_batch_each_deal_read_once(app, portals):
    (portal, fake), *_ = portals
    _deals_to_accrue(portal, fake, runs=30, deals=10)
    settings = B24Settings.from_config(app.config)
    workers.b24_pass(settings, "worker-0")
    replies = [p["RETURN_VALUES"] for p in fake.sent("bizproc.event.send")]
    assert len(replies) == 30 and {r["Success"] for r in replies} == {"Y"}
    assert sum(r["AlreadyAccrued"] == "N" for r in replies) == 10  # one accrual per deal
    assert len(fake.sent("crm.deal.get")) == 10  # each deal read once, for all its runs
    assert fake.requests <= 4  # one batch of reads, then the answers packed 50 a request


def test_two_worker_threads_of_one_process_leave_the_quiet_portal_free(app, monkeypatch):
    """The scheduler's own lane threads (one process, two threads): one works the flood,
    the other answers the quiet portal at once. They used to share one holder name, so
    both took the flooded portal's lane, slept on its bucket, and the quiet run waited."""
    if not app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("several lane threads run on PostgreSQL only")
    monkeypatch.setattr(ratelimit, "DEFAULT_LIMITER", ratelimit.RateLimiter(rate_per_s=2, burst=5))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        flooded, quiet = (Portal.create(member_id=f"member-{n}",
                                        client_endpoint=f"https://p{n}.bitrix24.com/rest/",
                                        access_token="access-1", refresh_token="refresh-1",
                                        status="active") for n in range(2))
        flood_fake = TrackedPortal(rsps, flooded.client_endpoint, response_s=0.1)
        quiet_fake = TrackedPortal(rsps, quiet.client_endpoint, response_s=0.1)
        _deals_to_accrue(flooded, flood_fake, runs=500, deals=500)
        quiet_fake.add_contact(42)
        worker = app.extensions["worker"]
        worker.workers = 2
        worker.start_lanes()
        try:
            time.sleep(3)  # the flood is being worked
            ActivityRun.insert(_run(quiet, 0)).execute()
            asked = time.monotonic()
            worker.kick()
            while not quiet_fake.sent("bizproc.event.send") and time.monotonic() - asked < 30:
                time.sleep(0.02)
            answered_s = time.monotonic() - asked
        finally:
            worker.stop()
    assert answered_s < 2, f"the quiet portal waited {answered_s:.1f} s"
    assert flood_fake.most_in_flight == 1  # one lane thread at a time on the flooded portal
    assert ActivityRun.select().where((ActivityRun.portal == flooded)
                                      & (ActivityRun.status == "pending")).count() > 0  # still flooded


def _deals_to_accrue(portal, fake, *, runs, deals):
    """Accrual runs on `deals` deals (so their reads need batches), all of one card's contact."""
    from api.ledger import cards

    fake.add_contact(42)
    for deal in range(1, deals + 1):
        fake.deals[deal] = {"ID": str(deal), "CONTACT_ID": "42", "OPPORTUNITY": "1000.00"}
    cards.create_card(portal, {"phone": "79161234567", "last_name": "Петрова",
                               "first_name": "Анна", "client_category": "Врач",
                               "contact_id": 42}, actor="t")
    ActivityRun.insert_many([{**_run(portal, n), "code": "loyalty_bonus_accrue",
                              "document_id": json.dumps(["crm", "CCrmDocumentDeal",
                                                         f"DEAL_{n % deals + 1}"])}
                             for n in range(runs)]).execute()


def test_a_slow_worker_keeps_its_rows_while_it_lives(app, portals, monkeypatch):
    """A send that outlasts the claim's lease: the worker's keeper renews the claim, so
    another worker finds nothing to take and no row goes out twice."""
    monkeypatch.setattr(leases, "LEASE_S", 1)
    monkeypatch.setattr(leases, "RENEW_S", 0.2)
    monkeypatch.setattr(dispatch, "OUTBOX", dataclasses.replace(dispatch.OUTBOX, claim_s=1))
    (portal, fake), *_ = portals
    fake.response_s = 3
    event_sends(portal, 5)
    settings = B24Settings.from_config(app.config)

    def slow_worker():
        with connection():
            workers.b24_pass(settings, leases.me())

    leases.start_keeper()
    try:
        slow = threading.Thread(target=slow_worker, name="slow")
        slow.start()
        time.sleep(2)  # twice the lease into its send
        assert dispatch.deliver_due(settings) == 0  # nothing free: the rows are still its own
        slow.join(30)
    finally:
        leases.stop_keeper()
    tokens = [p["EVENT_TOKEN"] for p in fake.sent("bizproc.event.send")]
    assert sorted(tokens) == [f"{portal.member_id}|{n:03d}" for n in range(5)]  # once each


def test_a_send_checks_its_rows_are_still_its_own(app, portals):
    """A claim that lapsed while its worker stalled and went to another: the stalled one
    must not send those rows too (the fence)."""
    (portal, fake), *_ = portals
    event_sends(portal, 3)
    settings = B24Settings.from_config(app.config)
    now = utcnow()
    stalled = queue.claimed(dispatch.OUTBOX, now, limit=50)
    Outbox.update(claimed_by="other-host:1/b24-0").where(Outbox.id == stalled[0].id).execute()
    dispatch.deliver_pack(stalled, settings, now=now)
    tokens = [p["EVENT_TOKEN"] for p in fake.sent("bizproc.event.send")]
    assert tokens == [f"{portal.member_id}|{n:03d}" for n in (1, 2)]  # not the taken one
    assert Outbox.get_by_id(stalled[0].id).status == "pending"


def test_renewal_and_release_touch_only_this_processs_live_claims(app, portals):
    (portal, _), *_ = portals
    event_sends(portal, 3)
    now = utcnow()
    first, second, third = queue.claimed(dispatch.OUTBOX, now, limit=50)
    Outbox.update(claimed_by="other-host:1/b24-0").where(Outbox.id == second.id).execute()
    Outbox.update(claimed_until=now - timedelta(seconds=1)).where(Outbox.id == third.id).execute()
    assert leases.renew(now=now) == 1  # the live claim of ours; not another's, not a lapsed one
    assert Outbox.get_by_id(first.id).claimed_until == now + timedelta(seconds=leases.LEASE_S)
    assert leases.release() == 2  # a clean stop frees ours (the lapsed one too)
    assert Outbox.get_by_id(first.id).claimed_until is None
    assert Outbox.get_by_id(second.id).claimed_until is not None
