"""The webhooks page: subscriptions listed, created (the secret shown once), events changed,
paused, resumed, deleted; the delivery log and replay. Admins only, CSRF on every request,
and the API's own validation (https only, no private addresses) with its reason shown."""
from __future__ import annotations

import json
import logging
import re

import pytest
from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)
from test_pages import ADMIN, MANAGER, moved, row_counts, text
from test_webhooks import receiver  # noqa: F401 (fixture)

from api.ledger import cards
from api.models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from api.webhooks import sender, subscriptions
from pages import permissions

HOOK = "https://crm.example.ru/hooks/loyalty"
PAGE = "/b24/app/webhooks"


def subscribe(portal, url=HOOK, events=("card.created",), config=None):
    return subscriptions.create(portal, {"url": url, "events": list(events)}, config or {})


def create(admin, url=HOOK, events=("card.created", "bonus.accrued"), **extra):
    return admin.post(PAGE, {"url": url, "events": list(events), **extra})


def test_the_page_is_in_the_admins_menu(admin):
    page = text(admin.get("/b24/app/rules"))
    assert f'action="{PAGE}?_get=1"' in page and "Вебхуки" in page


def test_a_subscription_is_created_and_its_secret_shown_once(admin, installed, caplog):
    caplog.set_level(logging.DEBUG)
    response = create(admin, description="ERP")
    assert response.status_code == 200, text(response)
    sub = WebhookSubscription.get()
    secret = re.search(r'<code class="lp-big" id="secret">(whsec_[^<]+)</code>', text(response))[1]
    assert secret == sub.secret and sub.portal_id == installed.id and sub.description == "ERP"
    assert json.loads(sub.events) == ["bonus.accrued", "card.created"]
    listing = text(admin.get(PAGE))
    assert HOOK in listing and 'data-status="active"' in listing
    assert sub.secret not in listing and sub.secret not in text(admin.get(f"{PAGE}/{sub.id}"))
    assert sub.secret not in caplog.text


@pytest.mark.parametrize("url, reason", [
    ("http://crm.example.ru/hook", "Только https://"),
    ("https://10.0.0.5/hook", "10.0.0.5 — адрес закрытой или локальной сети: запрещено"),
    ("https://127.0.0.1:8443/hook", "адрес закрытой или локальной сети"),
    ("https://localhost/hook", "адрес закрытой или локальной сети"),
    ("https://[::ffff:169.254.169.254]/latest", "адрес закрытой или локальной сети"),
    ("ftp://crm.example.ru/x", "Только https://"),
])
def test_an_unsafe_url_is_refused_beside_the_field(admin, url, reason):
    response = create(admin, url=url)
    assert response.status_code == 422
    page = text(response)
    error = re.search(r'data-error-for="url">([^<]+)<', page)
    assert error and reason in error[1], page
    assert f'value="{url}"' in page  # what was typed comes back
    assert WebhookSubscription.select().count() == 0


def test_the_api_refuses_a_private_address_the_same_way(api):
    response = api.post("/api/v1/webhooks", json={"url": "https://10.0.0.5/h",
                                                 "events": ["card.created"]})
    assert response.status_code == 422
    assert "закрытой" in response.get_json()["error"]["fields"]["url"]


def test_no_events_is_refused(admin):
    response = create(admin, events=())
    assert response.status_code == 422 and 'data-error-for="events"' in text(response)
    assert WebhookSubscription.select().count() == 0


def test_events_are_changed(admin, installed):
    sub, _ = subscribe(installed)
    response = admin.post(f"{PAGE}/{sub.id}/events", {"events": ["bonus.debited", "tier.changed"]})
    assert "m=webhook_saved" in moved(response)
    assert json.loads(WebhookSubscription.get_by_id(sub.id).events) == ["bonus.debited",
                                                                        "tier.changed"]
    refused = admin.post(f"{PAGE}/{sub.id}/events", {"events": ["bonus.stolen"]})
    assert refused.status_code == 422 and f'data-error-for="events-{sub.id}"' in text(refused)


def test_pause_and_resume(admin, installed):
    sub, _ = subscribe(installed)
    assert "m=webhook_paused" in moved(admin.post(f"{PAGE}/{sub.id}/pause"))
    assert WebhookSubscription.get_by_id(sub.id).status == "paused"
    assert 'data-status="paused"' in text(admin.get(PAGE))
    assert "m=webhook_resumed" in moved(admin.post(f"{PAGE}/{sub.id}/resume"))
    row = WebhookSubscription.get_by_id(sub.id)
    assert row.status == "active" and row.paused_reason is None


def test_delete_asks_first(admin, installed):
    sub, _ = subscribe(installed)
    asked = admin.post(f"{PAGE}/{sub.id}/delete")
    assert asked.status_code == 200 and 'name="confirmed" value="1"' in text(asked)
    assert WebhookSubscription.select().count() == 1
    done = admin.post(f"{PAGE}/{sub.id}/delete", {"confirmed": "1"})
    assert "m=webhook_deleted" in moved(done) and WebhookSubscription.select().count() == 0


def test_the_log_shows_each_try_and_replay_sends_the_event_again(app, admin, installed,
                                                                 receiver):
    sub, secret = subscribe(installed, url=receiver.url, config=app.config)
    receiver.secret = secret
    receiver.status = 503
    cards.create_card(installed, {"phone": "+7 916 123-45-67", "last_name": "Петрова",
                                  "first_name": "Анна", "client_category": "Врач"}, actor="test")
    sender.deliver_due(app.config)
    event_id = WebhookDelivery.get().event.event_id
    log = text(admin.get(f"{PAGE}/{sub.id}"))
    row = re.search(rf'<tr data-event="{event_id}" data-ok="no">(.*?)</tr>', log, re.S)[1]
    assert "503" in row and "ждёт повтора" in row and "card.created" in row
    assert "UTC" in row.split("ждёт повтора")[1]  # the next retry
    listing = text(admin.get(PAGE))
    assert re.search(rf'id="sub-{sub.id}".*?503', listing, re.S)
    receiver.status = 200
    replayed = admin.post(f"{PAGE}/{sub.id}/replay", {"event_id": event_id})
    assert "m=webhook_replayed" in moved(replayed)
    sender.deliver_due(app.config)
    assert receiver.raw[-1] == event_id and [e["id"] for e in receiver.events] == [event_id]
    assert WebhookAttempt.select().count() == 2
    assert 'data-ok="yes"' in text(admin.get(f"{PAGE}/{sub.id}"))
    missing = admin.post(f"{PAGE}/{sub.id}/replay", {"event_id": "evt_nope"})
    assert missing.status_code == 404 and "Событие «evt_nope» не найдено" in text(missing)


def test_another_portals_subscription_is_not_found(admin, installed):
    from api.models import Portal

    other, _ = subscribe(Portal.create(member_id="other", status="active"))
    for path in (f"{PAGE}/{other.id}/pause", f"{PAGE}/{other.id}/delete",
                 f"{PAGE}/{other.id}/replay"):
        assert admin.post(path, {"confirmed": "1", "event_id": "x"}).status_code == 404
    assert admin.get(f"{PAGE}/{other.id}").status_code == 404
    assert WebhookSubscription.get_by_id(other.id).status == "active"


ACTIONS = [("get", PAGE, None), ("post", PAGE, {"url": HOOK, "events": ["card.created"]}),
           ("post", "{sub}/events", {"events": ["tier.changed"]}), ("post", "{sub}/pause", None),
           ("post", "{sub}/resume", None), ("post", "{sub}/delete", {"confirmed": "1"}),
           ("get", "{sub}", None), ("post", "{sub}/replay", {"event_id": "evt_x"})]


@pytest.mark.parametrize("method, path, form", ACTIONS)
def test_a_manager_is_refused_every_action(frame_user, installed, method, path, form):
    permissions.save(installed, {"access": {"view_cards": True, "adjust": True}}, actor="test")
    sub, _ = subscribe(installed)
    frame_user.login(MANAGER)
    before = row_counts()
    path = path.format(sub=f"{PAGE}/{sub.id}")
    got = frame_user.get(path) if method == "get" else frame_user.post(path, form)
    assert got.status_code == 403
    assert row_counts() == before and WebhookSubscription.get_by_id(sub.id).status == "active"


@pytest.mark.parametrize("method, path, form", ACTIONS)
def test_a_missing_or_forged_csrf_is_refused(frame_user, installed, method, path, form):
    sub, _ = subscribe(installed)
    frame_user.login(ADMIN)
    path = path.format(sub=f"{PAGE}/{sub.id}")
    before = row_counts()

    def call(csrf):
        return frame_user.get(path, csrf) if method == "get" else frame_user.post(path, form,
                                                                                   csrf)
    assert call(False).status_code == 403
    frame_user.csrf = "0" * 64
    assert call(True).status_code == 403
    assert row_counts() == before


def test_english(frame_user, installed):
    subscribe(installed)
    frame_user.login(ADMIN, LANG="en")
    page = text(frame_user.get(PAGE))
    assert "Webhooks" in page and "New subscription" in page and "Pause" in page


@pytest.mark.parametrize("path", ["/99999999999999999999", "/99999999999999999999/pause",
                                  "/2147483648/replay"])
def test_an_id_past_the_column_is_no_subscription_not_a_500(admin, installed, path):
    method = admin.get if path.count("/") == 1 else admin.post
    assert method(PAGE + path).status_code == 404
