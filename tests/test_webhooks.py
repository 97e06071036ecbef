"""Webhooks out: events written with the movement, signed, each once and in order per card
across a crash, retried, logged, replayed, paused when failing, and never sent inward."""
from __future__ import annotations

from datetime import timedelta

import pytest
from webhook_receiver import Receiver

from api.clock import utcnow
from api.models import (Notification, Outbox, Portal, WebhookAttempt, WebhookDelivery,
                        WebhookEvent, WebhookSubscription)
from api.webhooks import sender, signing

A, B = "79161234567", "79161112233"
ALL = ["card.created", "bonus.accrued", "bonus.debited", "bonus.reversed", "bonus.adjusted",
       "bonus.expired", "tier.changed", "card.merged"]


@pytest.fixture
def receiver(app):
    app.config.update(WEBHOOK_ALLOW_HTTP=True, WEBHOOK_ALLOW_NETWORKS="127.0.0.1/32")
    sender._pools.clear()
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def hooked(api, receiver):
    response = api.post("/api/v1/webhooks", json={"url": receiver.url, "events": ALL})
    assert response.status_code == 201, response.get_json()
    receiver.secret = response.get_json()["secret"]
    receiver.sub_id = response.get_json()["id"]
    return api


def deliver(app, now=None):
    return sender.deliver_due(app.config, now=now)


def shop(api):
    """Two cards, and movements on both, interleaved."""
    api.new_card(phone=A)
    api.new_card(phone=B, first_name="Иван")
    assert api.op(A, "accruals", {"amount": "60000", "reference": "d1"}).status_code == 201
    assert api.op(B, "accruals", {"amount": "1000", "reference": "d2"}).status_code == 201
    assert api.op(A, "debits", {"amount": "100", "reference": "d3"}).status_code == 201
    assert api.op(A, "adjustments", {"amount": "5", "reason": "goodwill"}).status_code == 201
    assert api.op(B, "reversals", {"reference": "d2"}).status_code == 201


EXPECTED_A = ["card.created", "bonus.accrued", "tier.changed", "bonus.debited", "bonus.adjusted"]
EXPECTED_B = ["card.created", "bonus.accrued", "bonus.reversed"]


def test_each_movement_is_one_signed_event_in_order_per_card(app, hooked, receiver):
    shop(hooked)
    assert deliver(app) == 8
    assert receiver.types(A) == EXPECTED_A and receiver.types(B) == EXPECTED_B
    assert receiver.refused == [] and len(receiver.raw) == 8
    accrued = next(e for e in receiver.events
                   if e["type"] == "bonus.accrued" and e["data"]["card"]["number"] == A)
    assert set(accrued) == {"id", "type", "timestamp", "data"} and accrued["id"].startswith("evt_")
    assert accrued["data"]["amount"] == "1800.00" and accrued["data"]["card"]["number"] == A
    tier = next(e for e in receiver.events if e["type"] == "tier.changed")["data"]
    assert (tier["tier_before"], tier["tier"]) == ("Базовый", "Серебряный")
    assert deliver(app) == 0  # nothing twice
    log = hooked.get(f"/api/v1/webhooks/{receiver.sub_id}/attempts").get_json()["items"]
    assert len(log) == 8 and all(a["ok"] and a["status_code"] == 200 for a in log)
    assert all(a["response_ms"] >= 0 for a in log)


def test_events_live_and_die_with_their_movement(app, hooked, receiver):
    hooked.new_card(phone=A)
    refused = hooked.op(A, "debits", {"amount": "100"})
    assert refused.status_code == 422  # insufficient balance: no movement, no event
    hooked.op(A, "accruals", {"amount": "1000", "reference": "d1"}, idem="same")
    again = hooked.op(A, "accruals", {"amount": "1000", "reference": "d1"}, idem="same")
    assert again.headers.get("Idempotency-Hit") == "true"
    assert [e.type for e in WebhookEvent.select().order_by(WebhookEvent.id)] == [
        "card.created", "bonus.accrued"]


class Crash(BaseException):
    """The process dies: nothing after this point runs, nothing is committed."""


def _is_a_accrual(event) -> bool:
    return event.card_number == A and event.type == "bonus.accrued"


@pytest.mark.parametrize("dies_in", ["send", "record"])
def test_a_crash_loses_nothing_and_the_receiver_gets_each_event_once_in_order(
        app, hooked, receiver, monkeypatch, dies_in):
    """The service dies while delivering A's accrual, before sending it or after the
    pass sent it and before recording that: the pass's rows stay claimed, the cards'
    later events wait, and once the claims lapse they go (again) with the same ids."""
    shop(hooked)
    real_send, real_record = sender.send, sender.record

    def dying_send(subscription, event, config):
        if _is_a_accrual(event):
            raise Crash()
        return real_send(subscription, event, config)

    def dying_record(results, now):
        if any(_is_a_accrual(row.event) for row, *_ in results):
            raise Crash()
        return real_record(results, now=now)

    monkeypatch.setattr(sender, dies_in, dying_send if dies_in == "send" else dying_record)
    with pytest.raises(Crash):
        deliver(app)
    monkeypatch.setattr(sender, "send", real_send)
    monkeypatch.setattr(sender, "record", real_record)
    assert deliver(app) == 0  # the crashed pass's rows are still claimed: their cards wait
    assert receiver.types(A)[:1] == ["card.created"] and len(receiver.types(A)) <= 2
    deliver(app, now=utcnow() + timedelta(seconds=sender.CLAIM_S + 1))
    assert receiver.types(A) == EXPECTED_A and receiver.types(B) == EXPECTED_B
    assert len(set(receiver.raw)) == 8 and receiver.refused == []  # repeats carry the same id
    assert WebhookDelivery.select().where(WebhookDelivery.status != "sent").count() == 0


def test_a_failing_event_holds_back_its_cards_later_ones_only(app, hooked, receiver):
    shop(hooked)
    first_a = WebhookEvent.select().where((WebhookEvent.card_number == A)
                                          & (WebhookEvent.type == "bonus.accrued")).get()
    receiver.fail_ids[first_a.event_id] = 1
    deliver(app)
    assert receiver.types(A) == ["card.created"] and receiver.types(B) == EXPECTED_B
    delivery = WebhookDelivery.get(WebhookDelivery.event == first_a)
    assert delivery.status == "pending" and delivery.last_status == 500
    assert delivery.next_attempt_at > utcnow() + timedelta(seconds=sender.FIRST_RETRY_S - 2)
    deliver(app, now=utcnow() + timedelta(seconds=sender.FIRST_RETRY_S + 1))
    assert receiver.types(A) == EXPECTED_A


def test_retries_back_off_for_a_day_then_give_up(app, hooked, receiver, monkeypatch):
    monkeypatch.setattr(sender, "PAUSE_FAILURES", 10_000)
    receiver.status = 503
    hooked.new_card(phone=A)
    now, waits = utcnow(), []
    while WebhookDelivery.get().status == "pending":
        row = WebhookDelivery.get()
        waits.append((row.next_attempt_at - now).total_seconds())
        now = max(now, row.next_attempt_at)
        deliver(app, now=now)
    assert WebhookDelivery.get().status == "failed"
    tried = WebhookAttempt.select().count()
    assert 10 <= tried <= 30 and now - WebhookDelivery.get().created_at >= timedelta(hours=24)
    assert WebhookAttempt.select().where(WebhookAttempt.status_code == 503).count() == tried


def test_a_subscription_that_keeps_failing_is_paused_and_the_admin_told(
        app, client, installed, receiver, api_actions):
    from api.auth import create_key

    api = api_actions(client, create_key(installed, "t"))
    created = api.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["card.created"]})
    receiver.secret, sub_id = created.get_json()["secret"], created.get_json()["id"]
    receiver.status = 500
    for i in range(12):
        api.new_card(phone=f"7916555{i:04d}")
    now = utcnow()
    for _ in range(40):
        deliver(app, now=now)
        if WebhookSubscription.get_by_id(sub_id).status == "paused":
            break
        now += timedelta(minutes=10)
    sub = WebhookSubscription.get_by_id(sub_id)
    assert sub.status == "paused" and "неудачных попыток" in sub.paused_reason
    told = Notification.get(Notification.template == "webhook_paused")
    assert told.recipient == "1" and receiver.url in told.body and "«Вебхуки»" in told.body
    assert Outbox.select().where(Outbox.key.startswith("webhook_paused")).count() == 1
    before = len(receiver.raw)
    assert deliver(app, now=now + timedelta(days=1)) == 0 and len(receiver.raw) == before
    receiver.status = 200
    resumed = api.client.patch(f"/api/v1/webhooks/{sub_id}", json={"status": "active"},
                               headers=api.headers())
    assert resumed.status_code == 200 and resumed.get_json()["status"] == "active"
    deliver(app, now=now + timedelta(days=1))
    assert len(receiver.types()) == 12


def test_replay_sends_the_same_event_again(app, hooked, receiver):
    hooked.new_card(phone=A)
    deliver(app)
    event_id = receiver.events[0]["id"]
    response = hooked.post(f"/api/v1/webhooks/{receiver.sub_id}/events/{event_id}/replay")
    assert response.status_code == 202 and response.get_json()["status"] == "pending"
    deliver(app)
    assert receiver.raw == [event_id, event_id]
    assert hooked.post(f"/api/v1/webhooks/{receiver.sub_id}/events/evt_nope/replay"
                       ).status_code == 404


def test_the_secret_is_shown_once_and_subscriptions_are_per_portal(client, hooked, receiver):
    shown = hooked.get(f"/api/v1/webhooks/{receiver.sub_id}").get_json()
    assert "secret" not in shown and shown["events"] == sorted(ALL)
    assert "secret" not in hooked.get("/api/v1/webhooks").get_json()["items"][0]
    from api.auth import create_key

    other = {"Authorization": f"Bearer {create_key(Portal.create(member_id='portal-b'))}"}
    assert client.get(f"/api/v1/webhooks/{receiver.sub_id}", headers=other).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{receiver.sub_id}", headers=other).status_code == 404
    bad = hooked.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["bonus.stolen"]})
    assert bad.status_code == 422 and "events.0" in bad.get_json()["error"]["fields"]


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https://user:pw@example.com/",
                                 "https:///nohost", "javascript:alert(1)", "x" * 2001])
def test_bad_urls_are_refused(hooked, url):
    response = hooked.post("/api/v1/webhooks", json={"url": url, "events": ["card.created"]})
    assert response.status_code == 422 and "url" in response.get_json()["error"]["fields"]


def test_plain_http_only_when_allowed(app, hooked, receiver):
    app.config["WEBHOOK_ALLOW_HTTP"] = False
    response = hooked.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["card.created"]})
    assert response.status_code == 422 and "https" in response.get_json()["error"]["fields"]["url"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]",
                                  "10.0.0.5", "169.254.169.254", "0.0.0.0"])
def test_private_and_loopback_addresses_are_refused_at_send_time(app, hooked, receiver, host):
    app.config["WEBHOOK_ALLOW_NETWORKS"] = ""
    port = receiver.url.split(":")[2].split("/")[0]
    WebhookSubscription.update(url=f"http://{host}:{port}/hook").execute()
    hooked.new_card(phone=A)
    deliver(app)
    attempt = WebhookAttempt.get()
    assert receiver.raw == [] and attempt.error.startswith("unsafe_url")
    assert attempt.status_code is None


def test_redirects_are_not_followed(app, hooked, receiver):
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data/"
    hooked.new_card(phone=A)
    deliver(app)
    attempt = WebhookAttempt.get()
    assert attempt.status_code == 302 and attempt.error.startswith("HTTP 302")
    assert len(receiver.raw) == 1


def test_a_signature_over_another_body_or_an_old_timestamp_is_refused():
    secret = signing.new_secret()
    headers = signing.headers(secret, "evt_1", 1_700_000_000, b'{"a":1}')
    assert signing.verify(secret, headers, b'{"a":1}', 1_700_000_010)
    assert not signing.verify(secret, headers, b'{"a":2}', 1_700_000_010)
    assert not signing.verify(secret, headers, b'{"a":1}', 1_700_000_000 + 301)
    assert not signing.verify(signing.new_secret(), headers, b'{"a":1}', 1_700_000_010)


KILLED_WORKER = """
import os, signal, sys
from api import create_app
from api.db import db
from api.webhooks import sender
app = create_app({"TESTING": True, "DATABASE_URL": sys.argv[1], "SECRET_KEY": "x",
                  "WEBHOOK_ALLOW_HTTP": True, "WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32"})
real, calls = sender.record, [0]
def record(results, now):
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # sent, not recorded: the worst moment
    return real(results, now=now)
sender.record = record
db.connect()
sender.deliver_due(app.config)
"""


def test_a_killed_worker_process_loses_nothing_and_duplicates_nothing(
        app, hooked, receiver, database_url):
    import subprocess
    import sys

    shop(hooked)
    if not database_url.startswith("postgresql"):
        from api.db import db

        db.close()  # let the child take SQLite's write lock
    # Killed at the second pass (A's and B's accruals), after sending, before recording.
    done = subprocess.run([sys.executable, "-c", KILLED_WORKER, database_url, "2"],
                          capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    from api.db import db

    db.connect(reuse_if_open=True)
    assert len(set(receiver.raw)) == 4 and len(receiver.types()) == 4
    deliver(app, now=utcnow() + timedelta(seconds=sender.CLAIM_S + 1))
    assert receiver.types(A) == EXPECTED_A and receiver.types(B) == EXPECTED_B
    assert len(receiver.raw) == 10 and len(set(receiver.raw)) == 8  # two repeats, same ids


def test_a_merge_is_one_card_merged_event_on_the_surviving_card(app, hooked, receiver):
    hooked.new_card(phone=A)
    hooked.new_card(phone=B, first_name="Иван")
    hooked.op(A, "adjustments", {"amount": "50", "reason": "старт"})
    for _ in range(2):  # a repeated merge moves nothing and tells nothing again
        assert hooked.post(f"/api/v1/cards/{A}/merge", json={"into": B}).status_code == 200
    deliver(app)
    merged = [e for e in receiver.events if e["type"] == "card.merged"]
    assert len(merged) == 1
    assert merged[0]["data"]["card"]["number"] == B and merged[0]["data"]["merged"]["number"] == A
    assert merged[0]["data"]["card"]["balance"] == "50.00"


def test_a_signing_secret_is_masked_if_it_ever_reaches_a_log_line():
    from api.logs import mask

    secret = signing.new_secret()
    assert mask(f"subscription 3 secret {secret} (url=https://x)") == \
        "subscription 3 secret whsec_*** (url=https://x)"


def test_without_a_subscriber_a_movement_builds_no_event_data(api, monkeypatch):
    from api.webhooks import events

    def unwanted(*args, **kwargs):
        raise AssertionError("event data built for an event nobody subscribed to")

    monkeypatch.setattr(events, "card_data", unwanted)
    monkeypatch.setattr(events, "shown", unwanted)
    api.new_card(phone=A)
    response = api.op(A, "accruals", {"amount": "60000", "reference": "d1"})  # a tier change too
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["tier"] != response.get_json()["tier_before"]
    assert WebhookEvent.select().count() == 0
