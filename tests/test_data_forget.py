"""Forgetting a client (152-FZ): no personal data left in any table or log, the ledger and
the program's numbers unchanged, the action recorded, the phone free for a new card."""
from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import pytest
from peewee import CharField, TextField

from activities.contacts import UF_BALANCE, UF_CARD, UF_TIER, fields_update
from api import kpis
from api.ledger import cards
from api.models import (ALL_TABLES, AuditEntry, Card, Contact, Entry, Notification, Operation,
                        Outbox)
from api.outbox import enqueue
from notifications import notices

PHONE, NUMBER, EMAIL = "+7 916 123-45-67", "79161234567", "anna.petrova@example.ru"
PERSONAL = (NUMBER, EMAIL, "Петрова", "Анна", "Сергеевна", "1990-05-17")


def personal_rows() -> list[tuple[str, str, int]]:
    """Every text cell of every table that holds one of the client's data."""
    found = []
    for model in ALL_TABLES:
        for field in model._meta.sorted_fields:
            if not isinstance(field, (CharField, TextField)):
                continue
            for needle in PERSONAL:
                for row in model.select(model.id).where(field.contains(needle)):
                    found.append((model.__name__, field.name, row.id))
    return found


@pytest.fixture
def client_with_history(api, portal):
    portal.client_endpoint = "https://a.bitrix24.ru/rest/"
    portal.save()
    api.new_card(phone=PHONE, email=EMAIL, middle_name="Сергеевна", birthdate="1990-05-17",
                 contact_id=42)
    api.op(NUMBER, "accruals", {"amount": "60000", "reference": "deal-1"})
    api.op(NUMBER, "debits", {"amount": "100", "reference": "deal-2"})
    api.op(NUMBER, "adjustments", {"amount": "5", "reason": "Петрова Анна просила"})
    card = Card.get(Card.number == NUMBER)
    Contact.create(portal=portal, contact_id=42, last_name="Петрова", first_name="Анна",
                   phone=NUMBER, email=EMAIL, birthdate=date(1990, 5, 17))
    enqueue(portal, "fields:1", {"f": fields_update(card)})
    notices.insert(portal, card, "n1", "email", "welcome", EMAIL, "Анна, привет",
                   "Здравствуйте, Анна Петрова! Карта 79161234567")
    return card


def test_anonymised_client_leaves_no_personal_data_and_the_numbers_stay(
        api, client_with_history, portal, caplog):
    caplog.set_level(logging.DEBUG)
    assert personal_rows()  # the check can fail: the data is there before
    start, end = date.today() - timedelta(days=40), date.today() + timedelta(days=1)
    before = (kpis.period(portal, start, end), kpis.tiers(portal))
    ledger = [(e.kind, e.amount_kop, e.balance_after_kop)
              for e in Entry.select().order_by(Entry.id)]
    response = api.post(f"/api/v1/cards/{PHONE}/anonymise", json={"reason": "Заявление №17"})
    assert response.status_code == 200, response.json
    alias = response.json["card"]
    assert alias.startswith("anon") and response.json["status"] == "anonymised"
    assert personal_rows() == []
    assert not any(needle in caplog.text for needle in PERSONAL)
    assert (kpis.period(portal, start, end), kpis.tiers(portal)) == before
    assert [(e.kind, e.amount_kop, e.balance_after_kop)
            for e in Entry.select().order_by(Entry.id)] == ledger
    card = Card.get_by_id(client_with_history.id)
    assert (card.number, card.balance_kop, card.contact_id) == (alias, 170500, None)
    assert json.loads(Operation.select().where(Operation.card == card).first().result)[
        "card_number"] == alias
    assert Notification.get().body == "[удалено]"
    trail = AuditEntry.get(AuditEntry.action == "card.anonymise")
    assert trail.target == f"card:{card.id}" and trail.actor.startswith("api:")
    assert json.loads(trail.details) == {"reason": "Заявление №17"}
    assert AuditEntry.select().where(AuditEntry.action.contains("anonymise")).count() == 1
    clear = json.loads(Outbox.get(Outbox.key == f"forget:card{card.id}").calls)["clear"]
    assert clear == ["crm.contact.update", {"id": 42, "fields": {
        UF_CARD: "", UF_BALANCE: "", UF_TIER: ""}}]


def test_the_phone_can_start_a_new_card(api, client_with_history, portal):
    api.post(f"/api/v1/cards/{NUMBER}/anonymise", json={"reason": "Заявление"})
    fresh, created = cards.create_card(portal, {"phone": PHONE, "last_name": "Петрова",
                                                "first_name": "Анна", "client_category": "Врач"},
                                       actor="test")
    assert created and fresh.id != client_with_history.id and fresh.balance_kop == 0


def test_anonymise_needs_a_reason_and_a_card(api, client_with_history):
    response = api.post(f"/api/v1/cards/{NUMBER}/anonymise", json={"reason": ""})
    assert response.status_code == 422 and "reason" in response.json["error"]["fields"]
    assert api.post("/api/v1/cards/79990000000/anonymise",
                    json={"reason": "x"}).status_code == 404
    assert Card.get_by_id(client_with_history.id).number == NUMBER


def test_cli_forgets_without_echoing_the_phone(runner, client_with_history):
    result = runner.invoke(args=["data", "forget", PHONE, "--portal", "portal-a",
                                 "--reason", "Заявление №18"])
    assert result.exit_code == 0, result.output
    assert "forgotten" in result.output and NUMBER not in result.output
    assert AuditEntry.get(AuditEntry.action == "card.anonymise").source == "cli"
    assert personal_rows() == []


def test_the_sync_does_not_copy_a_forgotten_client_back(api, client_with_history, portal):
    from datetime import datetime

    from scheduler import client_copy

    api.post(f"/api/v1/cards/{NUMBER}/anonymise", json={"reason": "Заявление"})
    contact = {"ID": "42", "NAME": "Анна", "LAST_NAME": "Петрова", "EMAIL": [{"VALUE": EMAIL}],
               "PHONE": [{"VALUE": PHONE, "VALUE_TYPE": "MOBILE"}]}
    other = {"ID": "43", "NAME": "Ольга", "LAST_NAME": "Другая"}
    client_copy.store(portal, [contact, other], None, datetime(2026, 3, 1))
    assert [c.contact_id for c in Contact.select()] == [43]
    assert personal_rows() == []


def test_forgetting_erases_the_phone_from_webhook_events_and_login_codes(
        app, api, client, client_with_history):
    """Security review F8: a webhook replay, or a delivery still pending, sent the erased
    phone out again; login codes and rate-limit counters kept it."""
    from api.models import LoginCode, Throttle, WebhookEvent, WebhookSubscription

    app.config.update(WEBHOOK_ALLOW_HTTP=True)
    sub = api.post("/api/v1/webhooks", json={"url": "https://hooks.example/x",
                                             "events": ["bonus.adjusted"]}).get_json()
    assert api.op(NUMBER, "adjustments", {"amount": "10", "reason": "x"}).status_code == 201
    api.put("/api/v1/settings/notifications", json={"unisender_api_key": "classic-key-0002",
                                                    "sms_sender": "Club"})
    site = api.put("/api/v1/client-site", json={"origins": ["https://shop.example.ru"]})
    assert client.post("/api/v1/client/login",
                       json={"site": site.get_json()["site_id"], "phone": NUMBER},
                       environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 202
    assert LoginCode.select().count() == 1 and WebhookEvent.select().count() == 1
    event = WebhookEvent.get()
    assert NUMBER in event.data and '"contact_id": 42' in event.data

    forgot = api.post(f"/api/v1/cards/{NUMBER}/anonymise", json={"reason": "Заявление"})
    assert forgot.status_code == 200, forgot.get_json()
    assert personal_rows() == []
    assert LoginCode.select().count() == 0
    assert not [row.key for row in Throttle.select() if NUMBER in row.key]
    event = WebhookEvent.get()
    assert forgot.json["card"] in event.data and '"contact_id": null' in event.data
    replayed = api.post(f"/api/v1/webhooks/{sub['id']}/events/{event.event_id}/replay")
    assert replayed.status_code == 202  # what it sends now is the pseudonym
    assert WebhookSubscription.select().count() == 1
