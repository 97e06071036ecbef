"""Parallel debits on one card never overdraw it, on SQLite and on PostgreSQL."""
from __future__ import annotations

import threading

import pytest

from api.db import db
from api.ledger import cards, history, operations
from api.ledger.errors import IdempotencyConflict, InsufficientBalance
from api.models import Card, Entry, Operation

THREADS = 8
ATTEMPTS_PER_THREAD = 10


def run_in_threads(worker, count=THREADS):
    barrier = threading.Barrier(count)
    outcomes: list = []
    lock = threading.Lock()

    def body(i):
        barrier.wait()  # start together, so the debits really collide
        try:
            for result in worker(i):
                with lock:
                    outcomes.append(result)
        finally:
            db.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return outcomes


@pytest.fixture
def funded_card(portal):
    card, _ = cards.create_card(portal, {"phone": "9161234567", "last_name": "П",
                                         "first_name": "А", "client_category": "В"}, actor="t")
    operations.adjust(portal, card.number, 5_000, key="fund", actor="t", reason="Пополнение")
    return card


@pytest.mark.slow
def test_parallel_debits_never_overdraw(portal, funded_card):
    def worker(i):
        for n in range(ATTEMPTS_PER_THREAD):
            try:
                operations.debit(portal, funded_card.number, 100, key=f"t{i}-{n}", actor="t")
                yield "ok"
            except InsufficientBalance:
                yield "short"

    outcomes = run_in_threads(worker)
    assert len(outcomes) == THREADS * ATTEMPTS_PER_THREAD
    assert outcomes.count("ok") == 50  # 5 000 kop / 100: exactly the balance, not one more
    card = Card.get_by_id(funded_card.id)
    assert card.balance_kop == 0 == history.balance_from_entries(card)


@pytest.mark.slow
def test_parallel_repeats_of_one_key_write_once(portal, funded_card):
    def worker(i):
        try:
            yield operations.debit(portal, funded_card.number, 100, key="same", actor="t").result
        except IdempotencyConflict:  # never expected: the inputs are the same
            yield "conflict"

    outcomes = run_in_threads(worker)
    assert "conflict" not in outcomes and len({o["entry_id"] for o in outcomes}) == 1
    assert Entry.select().where(Entry.kind == "debit").count() == 1
    assert Card.get_by_id(funded_card.id).balance_kop == 4_900


@pytest.mark.slow
def test_one_key_raced_on_two_cards_is_a_conflict_not_a_crash(portal, funded_card):
    other, _ = cards.create_card(portal, {"phone": "9161234568", "last_name": "П",
                                          "first_name": "Б", "client_category": "В"}, actor="t")
    operations.adjust(portal, other.number, 5_000, key="fund2", actor="t", reason="Пополнение")
    numbers = [funded_card.number, other.number]

    def worker(i):
        try:
            operations.debit(portal, numbers[i % 2], 100, key="shared", actor="t")
            yield "ok"
        except IdempotencyConflict:
            yield "conflict"

    outcomes = run_in_threads(worker, count=4)
    # The winner's card replays for its twin thread; the other card's two get a conflict.
    assert sorted(outcomes) == ["conflict", "conflict", "ok", "ok"]
    assert Entry.select().join(Operation).where(Operation.key == "shared").count() == 1
