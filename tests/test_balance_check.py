"""Never below zero, at the database too (migration 0018, PostgreSQL): a debit whose card
it holds locked sends its balance UPDATE without waiting for the answer, and the CHECK
refuses a COMMIT that would leave a negative balance, whatever the code believed."""
from __future__ import annotations

from datetime import datetime

import pytest
from peewee import IntegrityError

from api.db import db, is_postgres
from api.ledger import cards, idempotency, operations
from api.ledger.errors import InsufficientBalance
from api.models import Card, Entry


@pytest.fixture
def card(portal):
    if not is_postgres():
        pytest.skip("the CHECK is PostgreSQL's; SQLite's debit waits for its conditional UPDATE")
    found, _ = cards.create_card(portal, {"phone": "9161234567", "last_name": "П",
                                          "first_name": "А", "client_category": "В"}, actor="t")
    operations.adjust(portal, found.number, 1_000, key="fund", actor="t", reason="Пополнение")
    return found


def test_the_database_refuses_a_negative_balance(card):
    with pytest.raises(IntegrityError), db.atomic():
        Card.update(balance_kop=-1).where(Card.id == card.id).execute()
    assert Card.get_by_id(card.id).balance_kop == 1_000


def test_a_debit_believing_a_wrong_balance_is_refused_at_commit(portal, card):
    with pytest.raises(IntegrityError), db.atomic():
        locked = operations.lock_card(portal, card.number)
        locked.locked_here, locked.balance_kop = True, 5_000  # what it wrongly believes
        claim = idempotency.claim(portal, idempotency.as_key("k-1"), "debit", {}, locked)
        operations.post(locked, "debit", -3_000, claim, actor="t", now=datetime(2026, 12, 1))
    assert Card.get_by_id(card.id).balance_kop == 1_000
    assert Entry.select().where(Entry.kind == "debit").count() == 0


def test_a_debit_past_the_balance_is_still_a_clean_refusal(portal, card):
    with pytest.raises(InsufficientBalance):
        operations.debit(portal, card.number, 1_001, key="k-2", actor="t")
    assert operations.debit(portal, card.number, 1_000, key="k-3", actor="t").result[
        "balance_kop"] == 0
    assert Card.get_by_id(card.id).balance_kop == 0
