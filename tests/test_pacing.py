"""Pacing and recovery against the fake portal: QUERY_LIMIT_EXCEEDED slows us to the drain
rate and retries within seconds; OVERLOAD_LIMIT stops the portal's work with an alert;
PORTAL_DELETED marks the portal; one bucket per portal for every process of the host."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from b24fake import post_form, workflow_form

from api.models import ActivityRun, Outbox, Portal, PortalLane
from background.outbox import enqueue
from background import lanes, ratelimit
from scheduler.worker import TICK_S

QUERY_LIMIT = (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
OVERLOAD = (503, {"error": "OVERLOAD_LIMIT", "error_description": "REST API is blocked due to overload"})
DELETED = (500, {"error": "PORTAL_DELETED", "error_description": "Portal was deleted"})


class SimClock:
    """Simulated time for the scheduler's ticks and the limiter alike."""

    def __init__(self, start: datetime):
        self.start, self.offset_s = start, 0.0

    def time(self) -> float:
        return self.offset_s

    def sleep(self, seconds: float) -> None:
        self.offset_s += seconds

    @property
    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.offset_s)


@pytest.fixture
def clock(monkeypatch):
    sim = SimClock(datetime(2027, 1, 11, 9, 0))
    monkeypatch.setattr(ratelimit, "DEFAULT_LIMITER",
                        ratelimit.RateLimiter(clock=sim.time, sleep=sim.sleep))
    return sim


def ticks_until(app, clock, done, limit=timedelta(hours=3)) -> float:
    """Run the scheduler's 3-second tick in simulated time until `done()`; seconds taken."""
    started = clock.now
    while not done() and clock.now - started < limit:
        app.extensions["worker"].tick(now=clock.now)
        clock.sleep(TICK_S)
    return (clock.now - started).total_seconds()


def test_a_storm_of_twenty_refusals_is_answered_in_about_a_minute(app, client, b24, installed, clock):
    from api.ledger import rules

    rules.save(installed, {"client_category_field": "UF_CRM_CATEGORY"}, actor="t")
    b24.add_contact(42)
    b24.failures["crm.contact.get"] = [QUERY_LIMIT] * 10  # the run's read
    b24.failures["batch"] = [QUERY_LIMIT] * 10  # then its answer
    post_form(client, "/b24/activities/loyalty_card_create", workflow_form("loyalty_card_create"))
    answered_s = ticks_until(app, clock, lambda: b24.sent("bizproc.event.send"))
    print(f"\n20 QUERY_LIMIT_EXCEEDED refusals in a row: answered after {answered_s:.0f} s simulated")
    [reply] = b24.sent("bizproc.event.send")
    assert reply["RETURN_VALUES"]["Success"] == "Y"
    assert answered_s <= 90
    run = ActivityRun.get()
    assert (run.status, run.attempts, run.throttles) == ("done", 1, 10)  # refusals spent no attempt
    assert Outbox.get().status == "sent"


def test_refusals_slow_us_to_the_drain_rate(app, b24, installed, clock):
    """After a refusal the next request waits one drain interval (0.5 s at 2 requests/s)."""
    limiter = ratelimit.shared()
    limiter.acquire(installed.member_id)
    assert limiter.wait_s(installed.member_id) == 0
    limiter.refused(installed.member_id)
    assert limiter.wait_s(installed.member_id) == pytest.approx(0.5)
    before = clock.time()
    limiter.acquire(installed.member_id)
    assert clock.time() - before == pytest.approx(0.5)


def test_server_errors_still_back_off_for_minutes(app, b24, installed, clock):
    enqueue(installed, "op:1", {"one": ("crm.contact.update", {"id": 42, "fields": {"UF_CRM_X": "1"}})})
    b24.failures["crm.contact.update"] = [(500, {"error": "INTERNAL_SERVER_ERROR",
                                                 "error_description": "oops"})] * 3
    b24.add_contact(42)
    app.extensions["worker"].tick(now=clock.now)
    row = Outbox.get()
    assert row.status == "pending" and row.attempts == 1 and row.throttles == 0
    assert row.next_attempt_at - clock.now >= timedelta(seconds=10)


def test_operation_time_limit_waits_at_least_a_minute(app, b24, installed, clock):
    enqueue(installed, "op:1", {"one": ("crm.contact.update", {"id": 42, "fields": {"UF_CRM_X": "1"}})})
    b24.failures["crm.contact.update"] = [(429, {"error": "OPERATION_TIME_LIMIT",
                                                 "error_description": "Method is blocked"})]
    app.extensions["worker"].tick(now=clock.now)
    assert Outbox.get().next_attempt_at - clock.now >= timedelta(seconds=60)


def test_overload_limit_stops_the_portal_with_an_alert_until_a_person_resumes(app, b24, installed,
                                                                               clock):
    b24.add_contact(42)
    for n in range(3):
        enqueue(installed, f"op:{n}", {"one": ("crm.contact.update", {"id": 42, "fields": {"UF_CRM_X": "1"}})})
    b24.failures["batch"] = [OVERLOAD]  # the three rows go out in one batch request
    ticks_until(app, clock, lambda: False, limit=timedelta(minutes=30))
    assert b24.requests == 1  # one refusal, then nobody knocks every few seconds
    [alert] = lanes.alerts(installed.id)
    assert alert.alert_code == "OVERLOAD_LIMIT" and "overload" in alert.alert
    assert Outbox.select().where(Outbox.status == "pending").count() == 3
    assert Outbox.get(Outbox.key == "op:0").attempts == 0  # the block spent no attempt
    assert lanes.resume(installed.id, lanes.B24)
    ticks_until(app, clock, lambda: Outbox.select().where(Outbox.status == "sent").count() == 3)
    assert lanes.alerts(installed.id) == []


def test_portal_deleted_marks_the_portal_and_stops(app, b24, installed, clock):
    other = Portal.create(member_id="other", client_endpoint="https://other.bitrix24.com/rest/",
                          access_token="t", status="active")
    for n in range(3):
        enqueue(installed, f"op:{n}", {"one": ("crm.contact.update", {"id": 42, "fields": {"UF_CRM_X": "1"}})})
    enqueue(other, "op:x", {"one": ("crm.contact.update", {"id": 1, "fields": {}})})
    b24.failures["batch"] = [DELETED] * 5
    ticks_until(app, clock, lambda: False, limit=timedelta(minutes=10))
    assert Portal.get_by_id(installed.id).status == "deleted"
    assert b24.requests == 1
    first = Outbox.get(Outbox.key == "op:0")
    assert first.status == "failed" and "PORTAL_DELETED" in first.last_error
    assert lanes.alerts(installed.id)[0].alert_code == "PORTAL_DELETED"
    assert not lanes.resume(installed.id, lanes.B24)  # permanent: no resume button undoes it
    assert PortalLane.select().where(PortalLane.portal == other.id).count() == 0


def test_one_bucket_per_portal_for_every_process_of_the_host(tmp_path):
    """Another process takes 30 of the 50-request burst; this one finds 20 left."""
    code = ("import time; from background.ratelimit import RateLimiter, FileBuckets; "
            f"lim = RateLimiter(clock=time.time, store=FileBuckets({str(tmp_path)!r})); "
            "[lim.acquire('portal-a') for _ in range(30)]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ratelimit_root()))
    import time

    here = ratelimit.RateLimiter(clock=time.time, store=ratelimit.FileBuckets(str(tmp_path)),
                                 sleep=lambda s: None)
    free = 0
    while here.wait_s("portal-a") == 0 and free < 60:
        here.acquire("portal-a")
        free += 1
    assert 19 <= free <= 21  # the other process's 30 are gone (plus what drained meanwhile)
    assert here.wait_s("portal-b") == 0  # another portal has a bucket of its own


def ratelimit_root():
    from pathlib import Path

    return Path(ratelimit.__file__).resolve().parents[1]
