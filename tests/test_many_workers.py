"""Many workers, many portals: claims that never send a row twice, one worker per portal's
lane at a time (its calls in order and within its limit), a dead worker's lanes and claims
taken over, and a flooded portal that does not delay a quiet one."""
from __future__ import annotations

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
from background import lanes, queue, ratelimit, workers
from background import dispatch

RATE_PER_S, BURST = 20.0, 3


class TrackedPortal(FakePortal):
    """A fake portal that remembers when each request came and how many overlapped."""

    def __init__(self, rsps, endpoint):
        super().__init__(rsps, endpoint=endpoint)
        self.guard = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.stamps: list[float] = []

    def _http(self, request):
        with self.guard:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.stamps.append(time.monotonic())
        try:
            time.sleep(0.01)  # a response time, so overlapping workers would show
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
        event_sends(portal, 40)
    run_workers(app, 3, lambda: Outbox.select().where(Outbox.status == "sent").count() == 120)
    assert Outbox.select().where(Outbox.status == "sent").count() == 120
    for portal, fake in portals:
        tokens = [p["EVENT_TOKEN"] for p in fake.sent("bizproc.event.send")]
        assert tokens == [f"{portal.member_id}|{n:03d}" for n in range(40)]  # once each, in order
        assert fake.most_in_flight == 1  # one worker at a time holds a portal's lane
        assert len(fake.stamps) == 4  # 10 rows a turn, packed into one request
        for i, first in enumerate(fake.stamps):
            for j in range(i + 1, len(fake.stamps)):
                allowed = BURST + RATE_PER_S * (fake.stamps[j] - first) + 0.5
                assert j - i + 1 <= allowed, "over the portal's rate limit"


def test_a_worker_killed_mid_batch_loses_its_lane_and_claims_and_nothing_is_lost(app, portals):
    (portal, fake), *_ = portals
    event_sends(portal, 15)
    now = utcnow()
    # A worker took the lane and a pack of rows, then died before sending (SIGKILL, power).
    assert lanes.hold(portal.id, lanes.B24, "dead-worker", workers.LANE_LEASE_S, now)
    taken = list(queue.claimed(dispatch.OUTBOX, now, limit=10))
    settings = B24Settings.from_config(app.config)
    assert workers.b24_pass(settings, "survivor", now=now) == 0  # the lane is still leased
    later = now + timedelta(seconds=workers.LANE_LEASE_S + 1)
    assert workers.b24_pass(settings, "survivor", now=later) == 5  # the unclaimed rows
    assert workers.b24_pass(settings, "survivor",
                            now=now + timedelta(seconds=dispatch.CLAIM_S + 1)) == 10
    tokens = [p["EVENT_TOKEN"] for p in fake.sent("bizproc.event.send")]
    assert sorted(tokens) == [f"{portal.member_id}|{n:03d}" for n in range(15)]
    assert len(taken) == 10 and Outbox.select().where(Outbox.status == "sent").count() == 15


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
    assert waiting == 500 - workers.TURN_ROWS


def _run(portal, n):
    return {"portal": portal, "token_hash": f"h{portal.id}-{n}", "event_token": f"t{n}",
            "code": "loyalty_card_info", "document_id": json.dumps(["crm", "CCrmDocumentContact",
                                                                    "CONTACT_42"]),
            "properties": "{}", "created_at": utcnow() - timedelta(seconds=60 if n else 1)}
