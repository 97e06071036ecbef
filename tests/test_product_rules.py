"""Earning rules per product and section: a deal with mixed products accrues by the
rules (crm.deal.productrows.get, catalog.product.get), and says which rule gave how much."""
from __future__ import annotations

from decimal import Decimal

import pytest
from test_b24_activities import make_card, post, replies, tick

from api import product_rules
from api.auth import create_key
from api.models import Entry

RULES = {"rules": [
    {"product_id": 450, "percent": "10", "label": "Кофемашина"},
    {"section_id": 47, "exclude": True, "label": "Табак"},
    {"section_id": 48, "percent": "5", "bonus_share": "20"},
]}


def row(row_id, product_id, name, price, quantity=1):
    return {"ID": str(row_id), "OWNER_ID": "7", "OWNER_TYPE": "D", "PRODUCT_ID": product_id,
            "PRODUCT_NAME": name, "PRICE": price, "QUANTITY": quantity, "TYPE": 1}


@pytest.fixture
def deal(b24, installed):
    make_card(installed)
    b24.add_contact(42)
    b24.deals[7] = {"ID": "7", "OPPORTUNITY": "23349.50", "CURRENCY_ID": "RUB",
                    "CONTACT_ID": "42", "STAGE_SEMANTIC_ID": "S", "ASSIGNED_BY_ID": "7"}
    b24.product_rows[7] = [
        row(1, 450, "Кофемашина", 20000.0),  # product rule: 10 %
        row(2, 451, "Сигары", 1500.0, 2),  # section 47: excluded
        row(3, 452, "Зерно", 99.9, 3),  # section 48: 5 %
        row(4, 0, "Доставка", 50.2),  # typed by hand: the tier's 3 %
    ]
    b24.products.update({451: {"id": 451, "iblockSectionId": 47},
                         452: {"id": 452, "iblockSectionId": 48}})
    b24.scopes.add("catalog")
    return b24


def rules_api(client, portal, document):
    return client.put("/api/v1/rules/products", json=document,
                      headers={"Authorization": f"Bearer {create_key(portal)}"})


def test_a_deal_with_mixed_products_accrues_by_the_rules(app, client, deal, installed):
    assert rules_api(client, installed, RULES).status_code == 200
    post(client, "loyalty_bonus_accrue", document="DEAL_7", token="run-1")
    tick(app)
    values = replies(deal)[0]["RETURN_VALUES"]
    # 20000 × 10 % + 3000 × 0 + 299.70 × 5 % + 50.20 × 3 % = 2000 + 0 + 14.985 + 1.506
    # = 2016.491 → whole bonuses, rounded down once: 2016
    assert values["Accrued"] == "2016.00" and values["Success"] == "Y"
    assert "товар 450" in values["Explanation"] and "раздел 47" in values["Explanation"]
    assert "по уровню" in values["Explanation"]
    entry = Entry.get(Entry.kind == "accrual")
    assert entry.purchase_kop == 2_334_990 and entry.amount_kop == 201_600
    assert entry.percent == Decimal("8.63") and "раздел 48" in entry.comment
    timeline = [p for p in deal.sent("crm.timeline.logmessage.add")]
    assert timeline and "товар 450" in str(timeline[0])
    assert sorted(p["id"] for m, p in deal.calls if m == "catalog.product.get") == ["451", "452"]


def test_without_the_catalog_scope_section_rules_cannot_apply(app, client, deal, installed):
    deal.scopes.discard("catalog")
    rules_api(client, installed, RULES)
    post(client, "loyalty_bonus_accrue", document="DEAL_7", token="run-1")
    tick(app)
    values = replies(deal)[0]["RETURN_VALUES"]
    # 2000 + (3000 + 299.70 + 50.20) × 3 % = 2000 + 100.497 → 2100
    assert values["Accrued"] == "2100.00"


def test_no_rules_means_the_tier_on_the_deal_amount(app, client, deal):
    post(client, "loyalty_bonus_accrue", document="DEAL_7", token="run-1")
    tick(app)
    assert replies(deal)[0]["RETURN_VALUES"]["Accrued"] == "700.00"  # 23349.50 × 3 %, down
    assert not any(m == "crm.deal.productrows.get" for m, _ in deal.calls)


def test_an_amount_given_explicitly_uses_the_tier(app, client, deal, installed):
    rules_api(client, installed, RULES)
    post(client, "loyalty_bonus_accrue", document="DEAL_7", token="run-1", Amount="1000")
    tick(app)
    assert replies(deal)[0]["RETURN_VALUES"]["Accrued"] == "30.00"


def test_the_bonus_share_per_product_caps_what_bonuses_may_pay():
    rows = [row(1, 450, "A", 1000.0), row(2, 452, "B", 1000.0)]
    lines = product_rules.lines(rows, RULES["rules"], {452: 48})
    assert product_rules.payable_kop(lines, Decimal("30")) == 30_000 + 20_000


@pytest.mark.parametrize("rule, field", [
    ({"product_id": 1, "section_id": 2, "percent": "5"}, "rules.0.product_id"),
    ({"percent": "5"}, "rules.0.product_id"),
    ({"product_id": 1, "percent": "100.5"}, "rules.0.percent"),
    ({"product_id": 1, "exclude": True, "percent": "5"}, "rules.0.percent"),
    ({"product_id": "1", "percent": "5"}, "rules.0.product_id"),
    ({"product_id": 1, "bonus_share": "-1"}, "rules.0.bonus_share"),
])
def test_bad_rules_are_422_naming_the_field(client, installed, rule, field):
    response = rules_api(client, installed, {"rules": [rule]})
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"]


def test_rules_round_trip_and_unknown_keys_are_refused(client, installed):
    saved = rules_api(client, installed, RULES).get_json()["rules"]
    assert saved[0] == {"product_id": 450, "percent": "10.00", "label": "Кофемашина",
                        "exclude": False}
    assert rules_api(client, installed, {"rules": [], "extra": 1}).status_code == 422


def test_fractional_quantities_and_float_prices_are_exact():
    line = product_rules.lines([row(1, 5, "Сыр", 899.1, 0.35)], [], {})[0]
    assert line.amount_kop == 31_469  # 314.685 → 314.69, never a float's 314.68499…


def test_a_debit_on_the_deal_is_capped_by_the_bonus_share_per_product(app, client, deal,
                                                                      installed):
    from api.ledger import operations

    operations.adjust(installed, "79161234567", 3_000_000, key="a", actor="t", reason="тест")
    rules_api(client, installed, RULES)
    # Shares: the program's 100 % but 20 % in section 48:
    # 20000 + 3000 + 299.70 × 20 % + 50.20 = 23110.14
    post(client, "loyalty_bonus_debit", document="DEAL_7", token="d1", Amount="25000",
         ContactId="42")
    post(client, "loyalty_bonus_debit", document="DEAL_7", token="d2", Amount="25000",
         ContactId="42", AllowPartial="Y")
    tick(app)
    first, second = (r["RETURN_VALUES"] for r in replies(deal))
    assert first["Success"] == "N" and "23110.14" in first["Error"]
    assert second["Success"] == "Y" and second["Debited"] == "23110.14"
