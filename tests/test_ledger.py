"""The ledger's operations, on both databases, with an injected clock."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from api.ledger import cards, history, operations, reversals, rules
from api.ledger.errors import (
    AlreadyAccrued,
    AlreadyReversed,
    CardBlocked,
    CardExists,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidInput,
    MaxShareExceeded,
    MissingFields,
    ReferenceNotFound,
)
from api.models import Card, Entry, Lot, Portal

T0 = datetime(2026, 1, 10, 12, 0)
ACTOR = "test"


@pytest.fixture
def card(portal):
    made, _ = cards.create_card(portal, {"phone": "8 916 123 45 67", "last_name": "Петрова",
                                         "first_name": "Анна", "client_category": "Врач",
                                         "contact_id": 42}, actor=ACTOR, now=T0)
    return made


def accrue(portal, kop, key, ref=None, now=T0):
    return operations.accrue(portal, "79161234567", kop, key=key, actor=ACTOR, reference=ref,
                             now=now).result


def debit(portal, kop, key, now=T0, **kw):
    return operations.debit(portal, "79161234567", kop, key=key, actor=ACTOR, now=now, **kw).result


def reload(card):
    return Card.get_by_id(card.id)


def assert_consistent(card):
    card = reload(card)
    assert card.balance_kop == history.balance_from_entries(card)
    assert card.balance_kop == sum(l.remaining_kop for l in Lot.select().where(Lot.card == card))
    assert card.balance_kop >= 0


def test_card_numbers_are_the_phone_in_any_format(portal, card):
    assert card.number == "79161234567"
    for phone in ("+7 (916) 123-45-67", "9161234567", "89161234567"):
        assert cards.find_by_phone(portal, phone).id == card.id


def test_invalid_phone_is_refused_naming_the_field(portal):
    with pytest.raises(InvalidInput) as err:
        cards.create_card(portal, {"phone": "12345", "last_name": "X", "first_name": "Y",
                                   "client_category": "Z"}, actor=ACTOR)
    assert "phone" in err.value.fields


def test_missing_required_fields_are_named(portal):
    with pytest.raises(MissingFields) as err:
        cards.create_card(portal, {"phone": "9161234567", "first_name": " "}, actor=ACTOR)
    assert err.value.names == ["last_name", "first_name", "client_category"]
    assert Card.select().count() == 0


def test_same_contact_gets_its_card_back_another_contact_gets_a_conflict(portal, card):
    again, created = cards.create_card(portal, {"phone": "+79161234567", "last_name": "П",
                                                "first_name": "А", "client_category": "В",
                                                "contact_id": 42}, actor=ACTOR)
    assert (again.id, created) == (card.id, False)
    with pytest.raises(CardExists) as err:
        cards.create_card(portal, {"phone": "9161234567", "last_name": "П", "first_name": "А",
                                   "client_category": "В", "contact_id": 77}, actor=ACTOR)
    assert err.value.details["contact_id"] == 42


def test_one_card_per_phone_per_portal_but_portals_are_apart(portal, card):
    other = Portal.create(member_id="portal-b")
    theirs, created = cards.create_card(other, {"phone": "9161234567", "last_name": "П",
                                                "first_name": "А", "client_category": "В"},
                                        actor=ACTOR)
    assert created and theirs.id != card.id


def test_accrual_uses_the_tier_held_before_the_purchase(portal, card):
    first = accrue(portal, 6_000_000, "a1", "deal-1")  # 60 000 ₽ at Базовый 3 %
    assert first["amount_kop"] == 180_000 and first["percent"] == "3.00"
    assert first["tier"] == "Серебряный" and first["tier_before"] == "Базовый"
    second = accrue(portal, 1_000_000, "a2", "deal-2")  # now Серебряный 5 %
    assert second["amount_kop"] == 50_000
    card = reload(card)
    assert (card.purchases_kop, card.balance_kop) == (7_000_000, 230_000)
    assert_consistent(card)


def test_accrual_rounds_down_to_whole_bonuses_by_default(portal, card):
    assert accrue(portal, 99_999, "a1")["amount_kop"] == 2_900  # 29.99997 → 29
    rules.save(portal, {"rounding_unit": "kopeck", "rounding_mode": "half_up"}, actor=ACTOR)
    assert accrue(portal, 99_999, "a2")["amount_kop"] == 3_000  # 29.99997 → 30.00


def test_one_accrual_per_deal_unless_reversed(portal, card):
    accrue(portal, 100_000, "a1", "deal-7")
    with pytest.raises(AlreadyAccrued):
        accrue(portal, 100_000, "a2", "deal-7")
    reversals.reverse(portal, card.number, "deal-7", key="r1", actor=ACTOR, now=T0)
    assert accrue(portal, 100_000, "a3", "deal-7")["amount_kop"] == 3_000


def test_same_key_replays_the_first_result_and_writes_nothing(portal, card):
    first = operations.accrue(portal, card.number, 100_000, key="k", actor=ACTOR, now=T0)
    again = operations.accrue(portal, card.number, 100_000, key="k", actor=ACTOR, now=T0)
    assert again.replayed and not first.replayed and again.result == first.result
    assert Entry.select().where(Entry.kind == "accrual").count() == 1


def test_same_key_with_other_inputs_is_a_conflict(portal, card):
    accrue(portal, 100_000, "k")
    with pytest.raises(IdempotencyConflict):
        accrue(portal, 200_000, "k")


def test_debit_never_goes_below_zero(portal, card):
    accrue(portal, 1_000_000, "a1")  # 300 bonuses
    with pytest.raises(InsufficientBalance) as err:
        debit(portal, 30_100, "d1")
    assert err.value.available_kop == 30_000
    assert debit(portal, 30_000, "d2")["balance_kop"] == 0
    assert_consistent(card)


def test_partial_debit_only_when_asked(portal, card):
    accrue(portal, 1_000_000, "a1")
    assert debit(portal, 50_000, "d1", partial=True)["debited_kop"] == 30_000


def test_debit_respects_the_maximum_share_of_the_order(portal, card):
    accrue(portal, 10_000_000, "a1")  # 3000 bonuses
    rules.save(portal, {"max_debit_share_percent": "30"}, actor=ACTOR)
    with pytest.raises(MaxShareExceeded) as err:
        debit(portal, 40_000, "d1", order_kop=100_000)
    assert err.value.details["allowed"] == "300.00"
    assert debit(portal, 40_000, "d2", order_kop=100_000, partial=True)["debited_kop"] == 30_000


def test_blocked_card_cannot_accrue_or_debit(portal, card):
    cards.set_status(portal, card.number, "blocked")
    with pytest.raises(CardBlocked):
        accrue(portal, 100_000, "a1")
    cards.set_status(portal, card.number, "active")
    assert accrue(portal, 100_000, "a2")["amount_kop"] == 3_000


def test_debits_take_the_oldest_lots_first_and_expiry_is_exact(portal, card):
    accrue(portal, 1_000_000, "a1", now=T0)  # 300, expires T0+365d
    accrue(portal, 1_000_000, "a2", now=T0 + timedelta(days=100))  # 300, expires later
    debit(portal, 40_000, "d1", now=T0 + timedelta(days=200))  # 300 from lot 1, 100 from lot 2
    expired = operations.expire_card(reload(card), T0 + timedelta(days=366))
    assert expired == []  # lot 1 was spent whole
    expired = operations.expire_card(reload(card), T0 + timedelta(days=466))
    assert [e.amount_kop for e in expired] == [-20_000]
    assert reload(card).balance_kop == 0
    assert_consistent(card)


def test_operations_expire_due_lots_before_spending(portal, card):
    accrue(portal, 1_000_000, "a1", now=T0)
    with pytest.raises(InsufficientBalance):
        debit(portal, 100, "d1", now=T0 + timedelta(days=366))
    # The failed debit rolled back whole, expiry included: nothing half-written.
    assert Entry.select().where(Entry.kind == "expiry").count() == 0
    accrue(portal, 100_000, "a2", now=T0 + timedelta(days=366))
    assert [e.kind for e in Entry.select().order_by(Entry.id)][-2:] == ["expiry", "accrual"]
    assert_consistent(card)


def test_reversal_gives_back_debits_and_cancels_the_accrual(portal, card):
    accrue(portal, 1_000_000, "a0", "deal-0")  # 300
    debit(portal, 10_000, "d1", reference="deal-1")  # 100 spent on deal-1
    accrue(portal, 1_000_000, "a1", "deal-1")  # 300 for deal-1
    result = reversals.reverse(portal, card.number, "deal-1", key="r", actor=ACTOR,
                               now=T0).result
    assert result["returned_debit_kop"] == 10_000
    assert result["reversed_accrual_kop"] == 30_000 and result["unrecovered_kop"] == 0
    card = reload(card)
    assert card.balance_kop == 30_000 and card.purchases_kop == 1_000_000
    assert_consistent(card)
    with pytest.raises(AlreadyReversed):
        reversals.reverse(portal, card.number, "deal-1", key="r2", actor=ACTOR, now=T0)
    with pytest.raises(ReferenceNotFound):
        reversals.reverse(portal, card.number, "deal-x", key="r3", actor=ACTOR, now=T0)


def test_reversal_of_spent_bonuses_stops_at_zero_and_reports_the_rest(portal, card):
    accrue(portal, 1_000_000, "a1", "deal-1")  # 300
    debit(portal, 25_000, "d1", reference="order-9")  # 250 spent elsewhere
    result = reversals.reverse(portal, card.number, "deal-1", key="r", actor=ACTOR,
                               now=T0).result
    assert result["reversed_accrual_kop"] == 5_000 and result["unrecovered_kop"] == 25_000
    assert reload(card).balance_kop == 0
    assert_consistent(card)


def test_tier_follows_cumulative_purchases_down_on_reversal(portal, card):
    accrue(portal, 6_000_000, "a1", "deal-1")
    assert reload(card).tier == "Серебряный"
    reversals.reverse(portal, card.number, "deal-1", key="r", actor=ACTOR, now=T0)
    assert reload(card).tier == "Базовый"


def test_adjustment_needs_a_reason_and_cannot_overdraw(portal, card):
    with pytest.raises(InvalidInput):
        operations.adjust(portal, card.number, 500, key="j0", actor=ACTOR, reason=" ")
    operations.adjust(portal, card.number, 50_000, key="j1", actor=ACTOR, reason="Подарок")
    with pytest.raises(InsufficientBalance):
        operations.adjust(portal, card.number, -60_000, key="j2", actor=ACTOR, reason="Ошибка")
    operations.adjust(portal, card.number, -50_000, key="j3", actor=ACTOR, reason="Ошибка")
    assert reload(card).balance_kop == 0
    assert_consistent(card)


def test_welcome_bonus_is_granted_once_with_the_card(portal):
    rules.save(portal, {"welcome_bonus": "500"}, actor=ACTOR)
    data = {"phone": "9161234567", "last_name": "П", "first_name": "А", "client_category": "В"}
    card, _ = cards.create_card(portal, data, actor=ACTOR)
    cards.create_card(portal, data, actor=ACTOR)
    assert reload(card).balance_kop == 50_000
    assert Entry.select().where(Entry.kind == "welcome").count() == 1


def test_history_is_newest_first_and_paged(portal, card):
    for i in range(5):
        accrue(portal, 100_000, f"a{i}", now=T0 + timedelta(minutes=i))
    page, more = history.entries(card, page=1, per_page=3)
    assert [e.operation.key for e in page] == ["a4", "a3", "a2"] and more
    page, more = history.entries(card, page=2, per_page=3)
    assert [e.operation.key for e in page] == ["a1", "a0"] and not more


def test_rules_validation_names_the_field(portal):
    with pytest.raises(InvalidInput) as err:
        rules.save(portal, {"tiers": [{"name": "A", "threshold": "0", "percent": "101"}]},
                   actor=ACTOR)
    assert "tiers.0.percent" in err.value.fields
    with pytest.raises(InvalidInput) as err:
        rules.save(portal, {"tiers": [{"name": "A", "threshold": "0", "percent": "1"},
                                      {"name": "B", "threshold": "0", "percent": "2"}]},
                   actor=ACTOR)
    assert "tiers" in err.value.fields
    assert rules.load(portal).tiers[0].name == "Базовый"  # nothing was saved
