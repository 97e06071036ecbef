"""Idempotency keys: a client's key is its own namespace. Nothing the ledger or the
follow-up derives from a key can collide with another client key or an internal key."""
from __future__ import annotations

from api.models import Entry, Notification, Outbox

NUMBER = "79161234567"
OTHER = "79161234568"


def test_a_client_key_with_a_hash_suffix_cannot_break_a_later_reversal(api):
    api.new_card()
    api.op(NUMBER, "accruals", {"amount": "100000", "reference": "deal-1"}, idem="A")
    # The debit's key is what the reversal under "K" used to derive for its second entry.
    api.op(NUMBER, "debits", {"amount": "100", "reference": "deal-1"}, idem="K#1")
    response = api.op(NUMBER, "reversals", {"reference": "deal-1"}, idem="K")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["returned_debit"] == "100.00" and len(body["entry_ids"]) == 2


def test_long_keys_that_differ_at_the_end_each_get_their_bitrix24_writes(api, portal):
    portal.client_endpoint, portal.status = "https://example.bitrix24.com/rest/", "active"
    portal.save()
    api.new_card(contact_id=7)
    first, second = "x" * 199 + "1", "x" * 199 + "2"
    assert api.op(NUMBER, "accruals", {"amount": "1000"}, idem=first).status_code == 201
    assert api.op(NUMBER, "accruals", {"amount": "2000"}, idem=second).status_code == 201
    assert Outbox.select().count() == 2  # one batch per operation, none dropped
    sms = Notification.select().where(Notification.template == "accrual_sms")
    assert sms.count() == 2


def test_a_client_key_shaped_like_the_welcome_key_does_not_block_issuing(api):
    assert api.put("/api/v1/rules", json={"welcome_bonus": "50.00"}).status_code == 200
    api.new_card()
    taken = api.op(NUMBER, "accruals", {"amount": "1000"}, idem=f"welcome:{OTHER}")
    assert taken.status_code == 201
    card = api.new_card(phone="+7 916 123-45-68")
    assert card["number"] == OTHER and card["balance"] == "50.00"


def test_a_failed_first_use_does_not_reserve_the_key(api):
    api.new_card()
    refused = api.op(NUMBER, "debits", {"amount": "100"}, idem="once")
    assert refused.status_code == 422
    accepted = api.op(NUMBER, "accruals", {"amount": "1000"}, idem="once")
    assert accepted.status_code == 201 and "Idempotency-Hit" not in accepted.headers
    again = api.op(NUMBER, "accruals", {"amount": "1000"}, idem="once")
    assert again.headers["Idempotency-Hit"] == "true"
    assert Entry.select().where(Entry.kind == "accrual").count() == 1


def test_the_same_client_key_on_two_portals_is_two_operations(api, client, api_actions):
    from api.auth import create_key
    from api.models import Portal

    other = api_actions(client, create_key(Portal.create(member_id="portal-b"), "b"))
    api.new_card()
    other.new_card()
    assert api.op(NUMBER, "accruals", {"amount": "1000"}, idem="k").status_code == 201
    assert other.op(NUMBER, "accruals", {"amount": "2000"}, idem="k").status_code == 201
    assert Entry.select().where(Entry.kind == "accrual").count() == 2
