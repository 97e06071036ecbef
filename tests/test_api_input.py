"""Strict input at the REST API's edge (issue 13): every hostile value is a 422 (or 400)
in the one error shape, never a 500 and never stored, on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest

from api.models import Card, Entry, ProgramRules

NUMBER = "79161234567"
CARD = {"phone": "+7 916 000-00-01", "last_name": "Петрова", "first_name": "Анна",
        "client_category": "Врач"}


def error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"])
    return body["error"]


def raw_post(api, path, text, idem="k1"):
    return api.client.post(path, data=text, headers={**api.headers(idem),
                                                     "Content-Type": "application/json"})


@pytest.mark.parametrize("amount,kop", [
    ("1500", 150_000), ("1500.50", 150_050), ("1500,50", 150_050), ("1 500,50", 150_050),
    ("1\u00a0500.50", 150_050), ("10 000", 1_000_000), ("1,5", 150), (1500, 150_000),
    (1500.5, 150_050),
])
def test_accepted_amount_formats(api, amount, kop):
    api.new_card()
    response = api.op(NUMBER, "accruals", {"amount": amount})
    assert response.status_code == 201, response.get_json()
    assert Entry.get_by_id(response.get_json()["entry_id"]).purchase_kop == kop


@pytest.mark.parametrize("amount", ["1,500", "12,345", "-1,000"])
def test_a_comma_before_three_digits_is_refused_as_ambiguous(api, amount):
    api.new_card()
    found = error(api.op(NUMBER, "accruals", {"amount": amount}), 422)
    assert "Ambiguous" in found["fields"]["amount"] and "1500" in found["fields"]["amount"]
    assert Entry.select().count() == 0  # not taken as 1.50 ₽


@pytest.mark.parametrize("amount", ["1.500,50", "1,500.50", "1 5000", "1 2 3"])
def test_mixed_separators_are_refused(api, amount):
    api.new_card()
    assert "amount" in error(api.op(NUMBER, "accruals", {"amount": amount}), 422)["fields"]


CONTROL = ["\x00", "\x07", "\x1b", "\x7f", "\u0085", "\ud800"]


@pytest.mark.parametrize("field", ["last_name", "client_category", "phone", "email"])
def test_control_characters_in_card_fields_are_422(api, field):
    for char in CONTROL:
        body = {**CARD, field: f"Ив{char}анова" if field != "email" else f"a{char}@b.ru"}
        found = error(raw_post(api, "/api/v1/cards", json.dumps(body)), 422)  # \u-escaped
        assert field in found["fields"] and "Control characters" in found["fields"][field], char
    assert Card.select().count() == 0


def test_a_nul_in_every_movement_text_is_422(api):
    api.new_card()
    for kind, body, field in [("accruals", {"amount": "10", "reference": "d\x00"}, "reference"),
                              ("debits", {"amount": "1", "comment": "x\x00"}, "comment"),
                              ("reversals", {"reference": "\x00"}, "reference"),
                              ("adjustments", {"amount": "1", "reason": "\x00"}, "reason")]:
        assert field in error(api.op(NUMBER, kind, body), 422)["fields"], kind
    assert Entry.select().count() == 0


def test_a_nul_in_a_key_or_a_query_is_422(api):
    api.new_card()
    assert "a\x00" in error(api.op(NUMBER, "accruals", {"amount": "1", "a\x00": 1}), 422)["fields"]
    assert "q" in error(api.get("/api/v1/cards?q=%00"), 422)["fields"]
    assert "phone" in error(api.get("/api/v1/cards/lookup?phone=%00"), 422)["fields"]


def test_a_nul_in_a_tier_name_cannot_be_stored(api):
    api.new_card()
    tiers = [{"name": "Базовый\x00", "threshold": "0", "percent": "3"}]
    found = error(api.put("/api/v1/rules", json={"tiers": tiers}), 422)
    assert "tiers.0.name" in found["fields"]
    assert ProgramRules.select().count() == 0
    assert api.get(f"/api/v1/cards/{NUMBER}").status_code == 200  # later cards still work


def test_a_tier_name_with_a_line_break_is_refused_by_the_rules_themselves(app, portal):
    from api.ledger import rules
    from api.ledger.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:  # the pages' form saves through this too
        rules.save(portal, {"tiers": [{"name": "A\nB", "threshold": "0", "percent": "3"}]}, "t")
    assert "tiers.0.name" in caught.value.fields


def test_control_characters_in_notification_settings_are_422(api):
    found = error(api.put("/api/v1/settings/notifications", json={"sender_name": "Shop\x00"}),
                  422)
    assert "sender_name" in found["fields"]


@pytest.mark.parametrize("digits", [41, 4301, 5000])
def test_overlong_numbers_are_422_before_parsing(api, digits):
    api.new_card()
    big = "1" * digits
    assert "amount" in error(raw_post(api, f"/api/v1/cards/{NUMBER}/accruals",
                                      '{"amount": %s}' % big), 422)["fields"]
    assert "contact_id" in error(raw_post(api, "/api/v1/cards",
                                          '{"phone": "9160000001", "contact_id": %s}' % big),
                                 422)["fields"]
    assert "amount" in error(raw_post(api, f"/api/v1/cards/{NUMBER}/accruals",
                                      '{"amount": 1.%s}' % big, idem="k2"), 422)["fields"]
    response = api.client.put("/api/v1/rules", data='{"bonus_lifetime_days": %s}' % big,
                              headers={**api.headers(), "Content-Type": "application/json"})
    assert "bonus_lifetime_days" in error(response, 422)["fields"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api, literal):
    api.new_card()
    assert error(raw_post(api, f"/api/v1/cards/{NUMBER}/accruals", '{"amount": %s}' % literal),
                 400)["code"] == "invalid_json"


@pytest.mark.parametrize("field,value", [("manager_id", 2**31), ("manager_id", 2**31 + 5),
                                         ("contact_id", 2**53 + 1), ("manager_id", 0)])
def test_integers_are_bounded_to_their_columns(api, field, value):
    found = error(api.post("/api/v1/cards", json={**CARD, field: value}), 422)
    assert field in found["fields"]
    assert Card.select().count() == 0


def test_the_largest_manager_id_the_column_holds_is_stored(api):
    card = api.new_card(phone="9160000002", manager_id=2**31 - 1)
    assert card["manager_id"] == 2**31 - 1


@pytest.mark.parametrize("idem", ["ключ", "a\tb"])
def test_idempotency_keys_are_printable_ascii(api, idem):
    api.new_card()
    response = api.client.post(f"/api/v1/cards/{NUMBER}/accruals", json={"amount": "1"},
                               headers={"Authorization": f"Bearer {api.key}",
                                        "Idempotency-Key": idem.encode().decode("latin-1")})
    assert error(response, 400)["code"] == "idempotency_key_invalid"


def test_crm_text_with_a_nul_is_cleaned_before_storing(app, portal):
    from api.ledger import cards

    # Bitrix24 contact data and the pages' form reach the ledger without the API's schema.
    card, _ = cards.create_card(portal, {"phone": "9160000003", "last_name": "Ив\x00анова\x1b",
                                         "first_name": "Анна", "client_category": "В\x00"},
                                actor="t")
    assert (Card.get_by_id(card.id).last_name, card.client_category) == ("Иванова", "В")
