"""Workers that cannot be held up: every failure, expected or not, counts toward the
attempt limit and ends visibly; a slow UniSender never delays bizproc.event.send."""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta

import pytest
import responses
from b24fake import post_form, workflow_form

from api.ledger import cards
from api.models import ActivityRun, Notification, Outbox
from background.outbox import enqueue
from notifications import notices, settings
from notifications.unisender import GoClient
from background import dispatch

GO_URL = "https://go1.unisender.ru/ru/transactional/api/v1/email/send.json"
T0 = datetime(2027, 1, 11, 9, 0)
log = logging.getLogger(__name__)


def scheduled_tick(app, now):
    """As the scheduler runs a job: a failure is logged and the next tick comes."""
    try:
        app.extensions["worker"].tick(now=now)
    except Exception:
        log.exception("tick failed")


def test_an_outbox_row_that_crashes_stops_at_its_attempt_limit(app, b24, installed):
    enqueue(installed, "op:bad", {"one": ("crm.contact.update", {"id": 42, "fields": {}})})
    Outbox.update(calls=json.dumps({"one": 5})).execute()  # a row our code cannot read
    enqueue(installed, "op:good", {"one": ("crm.contact.update", {"id": 42, "fields": {}})})
    b24.add_contact(42)
    for hour in range(40):
        scheduled_tick(app, T0 + timedelta(hours=2 * hour))
    bad, good = Outbox.get(Outbox.key == "op:bad"), Outbox.get(Outbox.key == "op:good")
    assert (bad.status, bad.attempts) == ("failed", dispatch.ATTEMPTS_MAX)
    assert "TypeError" in bad.last_error and bad.claimed_until is None
    assert good.status == "sent"  # the broken row never blocked the queue behind it


def test_a_run_that_keeps_crashing_is_a_dead_letter_that_still_answers(app, client, b24, installed,
                                                                       monkeypatch):
    from background import runner

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(runner, "_commit", broken)
    post_form(client, "/b24/activities/loyalty_card_info", workflow_form("loyalty_card_info"))
    b24.add_contact(42)
    for hour in range(20):
        scheduled_tick(app, T0 + timedelta(hours=hour * 2))
    run = ActivityRun.get()
    assert (run.status, run.attempts) == ("failed", runner.ATTEMPTS_MAX)
    assert "RuntimeError" in run.last_error
    [reply] = b24.sent("bizproc.event.send")  # the workflow does not hang
    assert reply["RETURN_VALUES"]["Success"] == "N"


def test_an_email_whose_send_crashes_never_stays_sending_and_ends_a_dead_letter(app, b24, installed,
                                                                                monkeypatch):
    from notifications import delivery

    settings.save(installed, {"go_api_key": "go-key-0001", "sender_email": "club@example.ru"},
                  actor="t")

    def crash(self, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(GoClient, "send_email", crash)
    row = notices.insert(installed, None, "k1", "email", "bp", "anna@example.ru", "Тема", "<p>x</p>")
    seen = set()
    for hour in range(30):
        scheduled_tick(app, T0 + timedelta(hours=7 * hour))
        seen.add(Notification.get_by_id(row.id).status)
    row = Notification.get_by_id(row.id)
    assert "sending" not in seen
    assert (row.status, row.attempts) == ("failed", delivery.ATTEMPTS_MAX)
    assert "KeyError" in row.error


def test_an_email_cut_off_at_every_attempt_ends_a_dead_letter(app, installed):
    from notifications import delivery

    row = notices.insert(installed, None, "k1", "email", "bp", "anna@example.ru", "Тема", "<p>x</p>")
    Notification.update(status="sending", attempts=delivery.ATTEMPTS_MAX,
                        claimed_until=T0 - timedelta(minutes=1)).execute()
    delivery.recover_stuck(T0)
    assert Notification.get_by_id(row.id).status == "failed"


def _answered(b24, token):
    return [r for r in b24.sent("bizproc.event.send") if r["EVENT_TOKEN"] == token]


def test_a_slow_unisender_never_delays_bizproc_event_send(app, client, b24, installed):
    gate = threading.Event()

    def slow_go(request):
        gate.wait(20)  # UniSender takes its time
        return 200, {}, json.dumps({"status": "success", "job_id": "job-1",
                                    "emails": ["anna@example.ru"], "failed_emails": {}})

    b24.rsps.add_callback(responses.POST, GO_URL, callback=slow_go)
    settings.save(installed, {"go_api_key": "go-key-0001", "sender_email": "club@example.ru"},
                  actor="t")
    cards.create_card(installed, {"phone": "79161234567", "last_name": "Петрова",
                                  "first_name": "Анна", "client_category": "Врач",
                                  "contact_id": 42, "email": "anna@example.ru"}, actor="t")
    b24.add_contact(42)
    post_form(client, "/b24/activities/loyalty_unisender_send",
              workflow_form("loyalty_unisender_send", token="t-mail", properties={
                  "Channel": "email", "Subject": "Привет", "Body": "<p>Привет</p>"}))
    post_form(client, "/b24/activities/loyalty_card_info",
              workflow_form("loyalty_card_info", token="t-info"))
    worker = app.extensions["worker"]
    started = time.monotonic()
    worker.start()
    worker.kick()
    try:
        while not _answered(b24, "t-info") and time.monotonic() - started < 10:
            time.sleep(0.02)
        info_s = time.monotonic() - started
        assert _answered(b24, "t-info") and not gate.is_set() and not _answered(b24, "t-mail")
    finally:
        gate.set()
        while not _answered(b24, "t-mail") and time.monotonic() - started < 20:
            time.sleep(0.02)
        worker.stop()
    print(f"\ncard_info answered after {info_s:.2f} s while UniSender still held its e-mail")
    assert _answered(b24, "t-mail")[0]["RETURN_VALUES"]["MessageId"] == "job-1"


def test_outbox_rows_of_one_portal_share_batch_requests_of_50(app, b24, installed):
    b24.add_contact(42)
    for n in range(60):
        enqueue(installed, f"run:{n}", {"event_send": ("bizproc.event.send", {
            "EVENT_TOKEN": f"wf|A|{n}", "RETURN_VALUES": {"Success": "Y"}})})
    enqueue(installed, "op:bad", {"one": ("crm.contact.update", {"id": 999, "fields": {"X": "1"}})})
    for _ in range(2):
        app.extensions["worker"].tick(now=T0)
    assert b24.requests == 2  # 61 rows: 50 commands, then 11
    assert [p["EVENT_TOKEN"] for p in b24.sent("bizproc.event.send")] == \
        [f"wf|A|{n}" for n in range(60)]  # in order
    assert Outbox.select().where(Outbox.status == "sent").count() == 60
    bad = Outbox.get(Outbox.key == "op:bad")  # its refusal is its own, nobody else's
    assert bad.status == "failed" and "not found" in bad.last_error.lower()


def test_the_ledger_never_imports_the_background_package():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, api.ledger.operations, api.ledger.cards, api.ledger.reversals; "
            "print([m for m in sys.modules if m.split('.')[0] == 'background'])")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert found == "[]"
