"""The REST API under /api/v1: every operation, and every kind of bad input."""
from __future__ import annotations

import pytest

from api.auth import create_key
from api.models import Entry, Portal

NUMBER = "79161234567"


def error(response):
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"])
    return body["error"]


def test_no_key_or_a_wrong_key_is_401(client, portal):
    assert error(client.get("/api/v1/cards"))["code"] == "unauthorized"
    response = client.get("/api/v1/cards", headers={"Authorization": "Bearer lk_nope"})
    assert response.status_code == 401 and "lk_nope" not in response.get_data(as_text=True)


def test_revoked_key_is_401(runner, api, client):
    prefix = api.key[:10]
    assert "Revoked 1 key" in runner.invoke(args=["keys", "revoke", prefix]).output
    assert api.get("/api/v1/cards").status_code == 401


def test_a_card_of_another_portal_is_404(api, client):
    api.new_card()
    other = create_key(Portal.create(member_id="portal-b"))
    response = client.get(f"/api/v1/cards/{NUMBER}", headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 404 and error(response)["code"] == "card_not_found"


def test_create_then_get_by_number_phone_and_contact(api):
    created = api.post("/api/v1/cards", json={
        "phone": "8 (916) 123-45-67", "last_name": "Петрова", "first_name": "Анна",
        "client_category": "Врач", "contact_id": 42, "birthdate": "1990-05-17"})
    assert created.status_code == 201
    card = created.get_json()
    assert card["number"] == NUMBER and card["balance"] == "0.00" and card["tier"] == "Базовый"
    assert card["next_tier"] == {"name": "Серебряный", "threshold": "50000.00",
                                 "remaining": "50000.00"}
    assert api.get(f"/api/v1/cards/{NUMBER}").get_json()["contact_id"] == 42
    assert api.get("/api/v1/cards/+7%20916%20123-45-67").status_code == 200
    assert api.get("/api/v1/cards/lookup?phone=9161234567").get_json()["number"] == NUMBER
    assert api.get("/api/v1/cards/lookup?contact_id=42").get_json()["number"] == NUMBER
    assert api.get("/api/v1/cards/lookup?contact_id=43").status_code == 404
    assert error(api.get("/api/v1/cards/lookup"))["code"] == "lookup_key_required"


def test_same_phone_for_another_contact_is_409_naming_the_holder(api):
    api.new_card(contact_id=42)
    again = api.post("/api/v1/cards", json={"phone": "9161234567", "last_name": "Петрова",
                                            "first_name": "Анна", "client_category": "Врач",
                                            "contact_id": 42})
    assert again.status_code == 200 and again.get_json()["created"] is False
    conflict = api.post("/api/v1/cards", json={"phone": "9161234567", "last_name": "И",
                                               "first_name": "И", "client_category": "В",
                                               "contact_id": 99})
    assert conflict.status_code == 409
    assert error(conflict)["details"]["contact_id"] == 42


def test_missing_card_fields_are_422_naming_them(api):
    response = api.post("/api/v1/cards", json={"phone": "9161234567", "first_name": "Анна"})
    assert response.status_code == 422
    assert set(error(response)["fields"]) == {"last_name", "client_category"}


def test_search_and_paging(api):
    for i in range(3):
        api.new_card(phone=f"+7 916 000-00-0{i}", last_name=f"Иванов{i}")
    page = api.get("/api/v1/cards?per_page=2").get_json()
    assert len(page["items"]) == 2 and page["has_more"]
    assert api.get("/api/v1/cards?q=иванов1").get_json()["items"][0]["last_name"] == "Иванов1"
    assert api.get("/api/v1/cards?q=8 916 000 00 02").get_json()["items"][0]["number"] \
        == "79160000002"


def test_block_and_unblock(api):
    api.new_card()
    assert api.post(f"/api/v1/cards/{NUMBER}/block").get_json()["status"] == "blocked"
    response = api.op(NUMBER, "accruals", {"amount": "100"})
    assert response.status_code == 409 and error(response)["code"] == "card_blocked"
    assert api.post(f"/api/v1/cards/{NUMBER}/unblock").get_json()["status"] == "active"


def test_accrue_debit_reverse_adjust_and_history(api):
    api.new_card()
    accrued = api.op(NUMBER, "accruals", {"amount": "60000.00", "reference": "deal-1"})
    assert accrued.status_code == 201
    assert accrued.get_json()["amount"] == "1800.00" and accrued.get_json()["percent"] == "3.00"
    debited = api.op(NUMBER, "debits", {"amount": 500, "reference": "order-2",
                                        "order_amount": "2000"})
    assert debited.get_json()["balance"] == "1300.00"
    reversed_ = api.op(NUMBER, "reversals", {"reference": "order-2"})
    assert reversed_.get_json()["returned_debit"] == "500.00"
    adjusted = api.op(NUMBER, "adjustments", {"amount": "-0.50", "reason": "Округление"})
    assert adjusted.get_json()["balance"] == "1799.50"
    items = api.get(f"/api/v1/cards/{NUMBER}/transactions").get_json()["items"]
    assert [i["kind"] for i in items] == ["adjustment", "reversal", "debit", "accrual"]
    assert items[0]["comment"] == "Округление" and items[0]["actor"].startswith("api:lk_")
    only = api.get(f"/api/v1/cards/{NUMBER}/transactions?kind=debit").get_json()["items"]
    assert [i["kind"] for i in only] == ["debit"]


def test_idempotency_key_is_required_replayed_and_checked(api):
    api.new_card()
    missing = api.post(f"/api/v1/cards/{NUMBER}/accruals", json={"amount": "100"})
    assert missing.status_code == 400 and error(missing)["code"] == "idempotency_key_required"
    first = api.op(NUMBER, "accruals", {"amount": "1000"}, idem="same")
    again = api.op(NUMBER, "accruals", {"amount": "1000"}, idem="same")
    assert again.get_json() == first.get_json() and again.headers["Idempotency-Hit"] == "true"
    assert "Idempotency-Hit" not in first.headers
    other = api.op(NUMBER, "accruals", {"amount": "2000"}, idem="same")
    assert other.status_code == 409 and error(other)["code"] == "idempotency_conflict"
    assert Entry.select().count() == 1


def test_insufficient_balance_is_422_with_what_is_available(api):
    api.new_card()
    api.op(NUMBER, "accruals", {"amount": "10000"})
    response = api.op(NUMBER, "debits", {"amount": "301"})
    assert response.status_code == 422
    assert error(response)["code"] == "insufficient_balance"
    assert error(response)["details"]["available"] == "300.00"


def test_second_accrual_for_a_deal_is_409(api):
    api.new_card()
    api.op(NUMBER, "accruals", {"amount": "1000", "reference": "deal-5"})
    response = api.op(NUMBER, "accruals", {"amount": "1000", "reference": "deal-5"})
    assert response.status_code == 409 and error(response)["code"] == "already_accrued"


@pytest.mark.parametrize("amount", [
    "abc", "NaN", "Infinity", "-5", 0, -1, "1e400", 10**30, True, None, [], {}, "1.001",
    "١٢٣", "💰",
])
def test_bad_amounts_are_422_naming_the_field(api, amount):
    api.new_card()
    response = api.op(NUMBER, "accruals", {"amount": amount})
    assert response.status_code == 422, response.get_json()
    assert "amount" in error(response)["fields"]


@pytest.mark.parametrize("body,field", [
    ({}, "amount"),
    ({"amount": "10", "surprise": 1}, "surprise"),
    ({"amount": "10", "reference": ""}, "reference"),
    ({"amount": "10", "reference": "x" * 101}, "reference"),
    ({"amount": "10", "comment": 5}, "comment"),
])
def test_bad_bodies_are_422_naming_the_field(api, body, field):
    api.new_card()
    response = api.op(NUMBER, "accruals", body)
    assert response.status_code == 422 and field in error(response)["fields"]


def test_malformed_json_is_400(api):
    api.new_card()
    response = api.client.post(f"/api/v1/cards/{NUMBER}/accruals", data="{not json",
                               headers={**api.headers("k"), "Content-Type": "application/json"})
    assert response.status_code in (400, 422) and error(response)
    assert "Traceback" not in response.get_data(as_text=True)


def test_bad_phone_and_unicode_names(api):
    response = api.post("/api/v1/cards", json={"phone": "не телефон", "last_name": "Ё",
                                               "first_name": "Я", "client_category": "Врач"})
    assert response.status_code == 422 and "phone" in error(response)["fields"]
    ok = api.new_card(last_name="Д'Артаньян-Ёлкин 🌲", first_name="Zoë")
    assert ok["last_name"] == "Д'Артаньян-Ёлкин 🌲"


def test_unknown_card_in_any_format_is_404_and_bad_number_is_422(api):
    assert api.get("/api/v1/cards/79990000000").status_code == 404
    assert api.get("/api/v1/cards/12").status_code == 422


def test_rules_get_and_partial_put_with_validation(api):
    rules = api.get("/api/v1/rules").get_json()
    assert [t["percent"] for t in rules["tiers"]] == ["3.00", "5.00", "7.00"]
    assert rules["bonus_lifetime_days"] == 365
    changed = api.put("/api/v1/rules", json={"bonus_lifetime_days": 180})
    assert changed.status_code == 200 and changed.get_json()["bonus_lifetime_days"] == 180
    assert changed.get_json()["tiers"] == rules["tiers"]
    for body, field in [({"bonus_lifetime_days": "x"}, "bonus_lifetime_days"),
                        ({"max_debit_share_percent": 150}, "max_debit_share_percent"),
                        ({"tiers": []}, "tiers"),
                        ({"what": 1}, "what"),
                        ({"tiers": [{"name": "A", "threshold": "10", "percent": "1"}]}, "tiers")]:
        response = api.put("/api/v1/rules", json=body)
        assert response.status_code == 422 and field in error(response)["fields"], body
    assert api.put("/api/v1/rules", json=[1]).status_code == 400


def test_rule_change_applies_to_the_next_operation_only(api):
    api.new_card()
    first = api.op(NUMBER, "accruals", {"amount": "1000"}).get_json()
    tiers = api.get("/api/v1/rules").get_json()["tiers"]
    tiers[0]["percent"] = "10"
    api.put("/api/v1/rules", json={"tiers": tiers})
    second = api.op(NUMBER, "accruals", {"amount": "1000"}).get_json()
    assert (first["amount"], second["amount"]) == ("30.00", "100.00")
    history = api.get(f"/api/v1/cards/{NUMBER}/transactions").get_json()["items"]
    assert [h["percent"] for h in history] == ["10.00", "3.00"]


def test_healthz_and_openapi(client):
    assert client.get("/healthz").get_json()["status"] == "ok"
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/cards/{number}/debits" in spec["paths"]
    assert client.get("/api/v1/docs").status_code == 200


def test_a_card_list_reads_the_rules_once(api):
    from playhouse.test_utils import count_queries

    for i in range(5):
        api.new_card(phone=f"+7 916 000-00-0{i}", last_name=f"Иванов{i}")
    with count_queries() as five:
        assert len(api.get("/api/v1/cards").get_json()["items"]) == 5
    api.new_card(phone="+7 916 000-00-09", last_name="Шестой")
    with count_queries() as six:
        api.get("/api/v1/cards")
    assert six.count == five.count  # one more card, no more queries
