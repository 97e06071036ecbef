"""Activity handlers end to end: the form Bitrix24 posts, our ledger, and the exact
requests we send back, against a fake portal."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from b24fake import post_form, workflow_form

from background import runner
from api.clock import utcnow
from api.ledger import cards, operations
from api.models import ActivityRun, Card, Entry, Outbox, Portal


def post(client, code, document="CONTACT_42", token="wf.1|A1|tok.sig", **properties):
    return post_form(client, f"/b24/activities/{code}",
                     workflow_form(code, document, properties, token=token))


def tick(app, now=None):
    return app.extensions["worker"].tick(now=now)


def replies(b24):
    """What each bizproc.event.send said, in order."""
    return [p for p in b24.sent("bizproc.event.send")]


def make_card(portal, contact_id=42, phone="9161234567"):
    card, _ = cards.create_card(portal, {"phone": phone, "last_name": "Петрова", "first_name": "Анна",
                                         "client_category": "Врач", "contact_id": contact_id},
                                actor="t")
    return card


def test_forged_application_token_is_401_and_nothing_happens(client, b24, installed):
    form = workflow_form("loyalty_card_info", app_token="forged")
    response = post_form(client, "/b24/activities/loyalty_card_info", form)
    assert response.status_code == 401
    assert ActivityRun.select().count() == 0 and tick(client.application) == (0, 0, 0, 0, 0)
    assert b24.requests == 0


def test_unknown_portal_is_401(client, b24):
    response = post(client, "loyalty_card_info")
    assert response.status_code == 401 and b24.requests == 0


def test_card_create_reads_the_contact_and_answers_in_one_batch(app, client, b24, installed):
    b24.add_contact(42)
    from api.ledger import rules

    rules.save(installed, {"client_category_field": "UF_CRM_CATEGORY"}, actor="t")
    assert post(client, "loyalty_card_create").get_json() == {"status": "queued"}
    assert tick(app) == (1, 1, 0, 0, 0)
    card = Card.get(Card.contact_id == 42)
    assert (card.number, card.client_category, str(card.birthdate)) == \
        ("79161234567", "Врач", "1990-05-17")
    assert card.email == "anna@example.ru" and card.manager_id == 7
    [reply] = replies(b24)
    assert reply["EVENT_TOKEN"] == "wf.1|A1|tok.sig"
    assert reply["RETURN_VALUES"] == {"Success": "Y", "Error": "", "CardNumber": "79161234567",
                                      "Created": "Y", "Balance": "0.00", "Tier": "Базовый"}
    assert b24.contacts[42]["UF_CRM_LOYALTY_CARD"] == "79161234567"
    assert b24.requests == 2  # crm.contact.get, then one batch: event.send + contact fields


def test_card_create_with_missing_data_says_what_and_tells_the_manager(app, client, b24, installed):
    b24.add_contact(42, PHONE=[], UF_CRM_CATEGORY="")
    post(client, "loyalty_card_create")
    tick(app)
    [reply] = replies(b24)
    assert reply["RETURN_VALUES"]["Success"] == "N"
    assert reply["RETURN_VALUES"]["Error"] == \
        "Не хватает данных для карты: мобильный телефон, категория клиента"
    [notice] = b24.sent("im.notify.system.add")
    assert notice["USER_ID"] == "7" and "категория клиента" in notice["MESSAGE"]
    assert Card.select().count() == 0


def test_card_create_for_a_contact_that_has_a_card_returns_it(app, client, b24, installed):
    b24.add_contact(42)
    make_card(installed)
    post(client, "loyalty_card_create", ClientCategory="Врач")
    tick(app)
    assert replies(b24)[0]["RETURN_VALUES"]["Created"] == "N"


def test_card_info_with_and_without_a_card(app, client, b24, installed):
    post(client, "loyalty_card_info", token="t1")
    tick(app)
    make_card(installed)
    operations.adjust(installed, "79161234567", 15_050, key="a", actor="t", reason="тест")
    post(client, "loyalty_card_info", token="t2")
    tick(app)
    first, second = (r["RETURN_VALUES"] for r in replies(b24))
    assert (first["Success"], first["HasCard"]) == ("Y", "N")
    assert (second["HasCard"], second["Balance"], second["CardNumber"]) == \
        ("Y", "150.50", "79161234567")
    assert b24.requests == 2  # one event.send each: the contact id came with the document


def test_accrue_on_a_won_deal_once_per_deal(app, client, b24, installed):
    make_card(installed)
    b24.add_contact(42)
    b24.deals[7] = {"ID": "7", "OPPORTUNITY": "60000.00", "CURRENCY_ID": "RUB", "CONTACT_ID": "42",
                    "STAGE_SEMANTIC_ID": "S", "ASSIGNED_BY_ID": "7"}
    post(client, "loyalty_bonus_accrue", document="DEAL_7", token="run-1")
    tick(app)
    post(client, "loyalty_bonus_accrue_robot", document="DEAL_7", token="run-2")
    tick(app)
    first, second = (r["RETURN_VALUES"] for r in replies(b24))
    assert first == {"Success": "Y", "Error": "", "Accrued": "1800.00", "Percent": "3.00",
                     "Balance": "1800.00", "Tier": "Серебряный", "AlreadyAccrued": "N"}
    # this run accrued nothing: a designer's branch on Accrued > 0 must not fire again
    assert second == {"Success": "Y", "Error": "", "Accrued": "0.00", "Percent": "0.00",
                      "Balance": "1800.00", "Tier": "Серебряный", "AlreadyAccrued": "Y"}
    assert "уже начислены (1800.00)" in replies(b24)[1]["LOG_MESSAGE"]
    assert Entry.select().where(Entry.kind == "accrual").count() == 1
    assert b24.contacts[42]["UF_CRM_LOYALTY_BAL"] == "1800.00"


def test_debit_short_balance_is_an_error_and_debits_nothing(app, client, b24, installed):
    make_card(installed)
    operations.adjust(installed, "79161234567", 30_000, key="a", actor="t", reason="тест")
    post(client, "loyalty_bonus_debit", Amount="301", token="d1")
    post(client, "loyalty_bonus_debit", Amount="150,50", token="d2")
    tick(app)
    short, ok = (r["RETURN_VALUES"] for r in replies(b24))
    assert short == {"Success": "N", "Error": "Недостаточно бонусов: доступно 300.00",
                     "Debited": "0.00", "Balance": "300.00"}
    assert (ok["Success"], ok["Debited"], ok["Balance"]) == ("Y", "150.50", "149.50")
    assert "Недостаточно бонусов" in replies(b24)[0]["LOG_MESSAGE"]


def test_bad_property_values_get_an_error_reply(app, client, b24, installed):
    make_card(installed)
    post(client, "loyalty_bonus_debit", Amount="много")
    tick(app)
    [reply] = replies(b24)
    assert reply["RETURN_VALUES"]["Success"] == "N" and "Amount" in reply["RETURN_VALUES"]["Error"]


def test_unknown_contact_gets_an_error_reply(app, client, b24, installed):
    post(client, "loyalty_card_create", document="CONTACT_999")
    tick(app)
    assert replies(b24)[0]["RETURN_VALUES"]["Success"] == "N"


def test_a_duplicate_event_token_runs_once(app, client, b24, installed):
    make_card(installed)
    operations.adjust(installed, "79161234567", 30_000, key="a", actor="t", reason="тест")
    for _ in range(3):
        assert post(client, "loyalty_bonus_debit", Amount="100", token="same").status_code == 200
        tick(app)
    assert ActivityRun.select().count() == 1 and len(replies(b24)) == 1
    assert Entry.select().where(Entry.kind == "debit").count() == 1


def test_expired_token_is_refreshed_once_and_the_new_pair_stored(app, client, b24, installed):
    b24.tokens = {"access-2"}  # the stored access-1 has expired
    post(client, "loyalty_card_info")
    tick(app)
    assert b24.refreshes == 1 and len(replies(b24)) == 1
    portal = Portal.get_by_id(installed.id)
    assert (portal.access_token, portal.refresh_token) == ("access-2", "refresh-2")


def test_query_limit_exceeded_is_retried_later(app, client, b24, installed):
    b24.failures["bizproc.event.send"] = [
        (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})]
    post(client, "loyalty_card_info")
    tick(app)
    row = Outbox.get()
    assert row.status == "pending" and "QUERY_LIMIT_EXCEEDED" in row.last_error
    assert tick(app) == (0, 0, 0, 0, 0)  # backing off: not due yet
    tick(app, now=utcnow() + timedelta(minutes=5))
    assert Outbox.get().status == "sent" and len(replies(b24)) == 1


def test_batch_retry_resends_only_what_failed(app, client, b24, installed):
    make_card(installed)
    b24.add_contact(42)
    operations.adjust(installed, "79161234567", 30_000, key="a", actor="t", reason="тест")
    b24.failures["bizproc.event.send"] = [
        (200, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})]
    post(client, "loyalty_bonus_debit", Amount="100")
    tick(app)
    assert len(b24.sent("crm.contact.update")) == 1 and replies(b24) == []
    tick(app, now=utcnow() + timedelta(minutes=5))
    assert len(b24.sent("crm.contact.update")) == 1 and len(replies(b24)) == 1


def test_permanent_error_is_recorded_and_not_retried(app, client, b24, installed):
    b24.failures["bizproc.event.send"] = [
        (403, {"error": "ACCESS_DENIED", "error_description": "Access denied!"})]
    post(client, "loyalty_card_info")
    tick(app)
    row = Outbox.get()
    assert row.status == "failed" and "ACCESS_DENIED" in row.last_error
    tick(app, now=utcnow() + timedelta(days=1))
    assert Outbox.get().attempts == 1


def test_a_crash_before_commit_loses_nothing_and_writes_once(app, client, b24, installed,
                                                             monkeypatch):
    make_card(installed)
    operations.adjust(installed, "79161234567", 30_000, key="a", actor="t", reason="тест")
    post(client, "loyalty_bonus_debit", Amount="100")
    real = runner._finish

    def crash(ctx, reply):
        raise SystemExit("killed between the ledger write and the commit")

    monkeypatch.setattr(runner, "_finish", crash)
    with pytest.raises(SystemExit):
        tick(app)
    assert Entry.select().where(Entry.kind == "debit").count() == 0  # rolled back whole
    monkeypatch.setattr(runner, "_finish", real)
    tick(app, now=utcnow() + timedelta(minutes=10))  # the claim has lapsed: the restart takes it
    assert Entry.select().where(Entry.kind == "debit").count() == 1 and len(replies(b24)) == 1


def test_a_crash_after_commit_delivers_once_on_restart(app, client, b24, installed, monkeypatch):
    post(client, "loyalty_card_info")
    from scheduler import worker

    monkeypatch.setattr(worker, "deliver_due", lambda *a, **k: 0)  # died before delivering
    tick(app)
    assert replies(b24) == [] and Outbox.get().status == "pending"
    monkeypatch.undo()
    tick(app)
    tick(app)
    assert len(replies(b24)) == 1 and Outbox.get().status == "sent"


def test_unknown_activity_code_still_answers(app, client, b24, installed):
    post(client, "loyalty_something_else")
    tick(app)
    assert replies(b24)[0]["RETURN_VALUES"]["Success"] == "N"


def test_end_to_end_exact_batch_request(app, client, b24, installed):
    """The wire format of the answer: one JSON POST to /rest/batch with both commands."""
    import responses

    make_card(installed)
    operations.adjust(installed, "79161234567", 30_000, key="a", actor="t", reason="тест")
    post(client, "loyalty_bonus_debit", Amount="100", token="wf.9|A9|x.y")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "https://example.bitrix24.com/rest/batch",
                 json={"result": {"result": {"event_send": True, "contact_fields": True},
                                  "result_error": []}, "time": {}})
        tick(app)
        body = json.loads(rsps.calls[0].request.body)
    assert body["auth"] == "access-1" and body["halt"] == 0
    assert body["cmd"]["event_send"] == (
        "bizproc.event.send?EVENT_TOKEN=wf.9%7CA9%7Cx.y&RETURN_VALUES[Success]=Y&RETURN_VALUES[Error]="
        "&RETURN_VALUES[Debited]=100.00&RETURN_VALUES[Balance]=200.00"
        "&LOG_MESSAGE=%D0%A1%D0%BF%D0%B8%D1%81%D0%B0%D0%BD%D0%BE%20100.00%20%D0%B1%D0%BE%D0%BD%D1%83"
        "%D1%81%D0%BE%D0%B2")
    assert body["cmd"]["contact_fields"].startswith("crm.contact.update?id=42&fields[UF_CRM_LOYALTY_CARD]")
    assert Outbox.get().status == "sent"
