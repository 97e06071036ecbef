"""A hold binds what its capture will spend, so the deal's share payable by bonuses (rules
per product) binds the hold too (security review F6: a hold of 25,000 on a deal where
bonuses may pay 23,110.14, then its capture, debited the whole 25,000)."""
from __future__ import annotations

import pytest
from test_b24_activities import post, replies, tick
from test_product_rules import RULES, deal, rules_api  # noqa: F401 (deal is a fixture)

from api.ledger import operations
from api.models import Hold


def test_a_hold_over_the_deals_payable_share_is_refused(app, client, deal, installed):
    operations.adjust(installed, "79161234567", 3_000_000, key="a", actor="t", reason="тест")
    assert rules_api(client, installed, RULES).status_code == 200
    post(client, "loyalty_bonus_hold", document="DEAL_7", token="h1", Amount="25000",
         ContactId="42")
    post(client, "loyalty_bonus_hold", document="DEAL_7", token="h2", Amount="23110.14",
         ContactId="42")
    tick(app)
    refused, held = (r["RETURN_VALUES"] for r in replies(deal))
    assert refused["Success"] == "N" and "23110.14" in refused["Error"] and refused["HoldId"] == ""
    assert held["Success"] == "Y" and held["Held"] == "23110.14"
    assert [h.amount_kop for h in Hold.select()] == [2_311_014]


@pytest.mark.parametrize("path", ["/api/v1/holds/99999999999999999999/capture",
                                  "/api/v1/holds/2147483648/release"])
def test_a_hold_id_past_the_column_is_404_from_the_service(api, path):
    """The range check lives in api.ledger.holds, so the API, the pages and the
    activities all get 'no such hold' rather than an overflow (a 500)."""
    response = api.post(path, json={}, idem="k-range")
    assert response.status_code == 404, response.get_json()
    assert response.get_json()["error"]["code"] == "hold_not_found"

