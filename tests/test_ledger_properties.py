"""Random operation sequences against the ledger, on both databases.

A seeded generator mixes accruals, debits, reversals, adjustments, replays, the passing of
time and the daily expiry run. After every step the invariants must hold for every card:
the cached balance equals the sum of its entries and the sum of its lots' remainders, and
nothing is negative. A domain refusal (a LedgerError) is fine; any other exception is the
500 a client would get, and fails the test with the seed and the steps that led there.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from peewee import fn

from api.ledger import cards, operations, reversals, rollups
from api.ledger.errors import LedgerError
from api.models import Card, DailyStat, Entry, ExpiryDay, Lot
from scheduler import expiry

T0 = datetime(2026, 1, 10, 12, 0)
ACTOR = "property"
PHONES = ("79160000001", "79160000002", "79160000003")
REFERENCES = tuple(f"order-{n}" for n in range(8))
STEPS = 260
SEEDS = (1, 2, 3)


def _new_cards(portal):
    for n, phone in enumerate(PHONES):
        cards.create_card(portal, {"phone": phone, "last_name": "Тест", "first_name": f"К{n}",
                                   "client_category": "Врач"}, actor=ACTOR, now=T0)


def _step(rng: random.Random, portal, now: datetime, n: int, done: list):
    """One random operation; returns (label, now) with time possibly moved on."""
    number, ref = rng.choice(PHONES), rng.choice(REFERENCES + (None,))
    roll = rng.random()
    key = f"k{n}"
    if roll < 0.08:
        return f"{n}: time +days", now + timedelta(days=rng.choice((1, 30, 200, 366, 400)))
    if roll < 0.13:
        expiry.run(portal, now=now)
        return f"{n}: expiry run", now
    if roll < 0.20 and done:
        call = rng.choice(done)  # the same key and body again: a replay, nothing new
        before = Entry.select().count()
        outcome = call()
        assert outcome.replayed and Entry.select().count() == before
        return f"{n}: replay", now
    if roll < 0.45:
        call = lambda: operations.accrue(portal, number, rng_kop, key=key, actor=ACTOR,
                                         reference=ref, now=now)
        rng_kop = rng.randrange(1, 2_000_000)
    elif roll < 0.70:
        partial = rng.random() < 0.5
        rng_kop = rng.randrange(1, 40_000)
        call = lambda: operations.debit(portal, number, rng_kop, key=key, actor=ACTOR,
                                        reference=ref, partial=partial, now=now)
    elif roll < 0.88:
        ref = ref or REFERENCES[0]
        call = lambda: reversals.reverse(portal, number, ref, key=key, actor=ACTOR, now=now)
        rng_kop = None
    else:
        rng_kop = rng.choice((1, -1)) * rng.randrange(1, 30_000)
        call = lambda: operations.adjust(portal, number, rng_kop, key=key, actor=ACTOR,
                                         reason="проверка", now=now)
    try:
        call()
    except LedgerError as exc:
        return f"{n}: {exc.code} {number} {rng_kop} {ref}", now
    done.append(call)
    return f"{n}: ok {number} {rng_kop} {ref}", now


def _check_invariants():
    for card in Card.select():
        entries = (Entry.select(fn.COALESCE(fn.SUM(Entry.amount_kop), 0))
                   .where(Entry.card == card).scalar())
        lots = list(Lot.select().where(Lot.card == card))
        assert card.balance_kop == entries, "balance != sum of entries"
        assert card.balance_kop == sum(lot.remaining_kop for lot in lots), \
            "balance != sum of open lots"
        assert card.balance_kop >= 0
        assert all(0 <= lot.remaining_kop <= lot.amount_kop for lot in lots)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_operation_sequences_keep_the_ledger_consistent(portal, seed):
    rng, now, done, trail = random.Random(seed), T0, [], []
    _new_cards(portal)
    for n in range(STEPS):
        try:
            label, now = _step(rng, portal, now, n, done)
        except Exception as exc:  # what a client would see as a 500
            pytest.fail(f"seed {seed}, step {n}: {type(exc).__name__}: {exc}\n"
                        + "\n".join(trail[-12:]))
        trail.append(label)
        _check_invariants()
    _check_rollups(portal)


def _check_rollups(portal):
    """Folded after commit, the rollups say what the entries and lots say, once."""
    for _ in range(2):  # a second catch-up finds nothing left to add
        rollups.catch_up(portal)
        by_kind = dict(DailyStat.select(DailyStat.kind, fn.SUM(DailyStat.amount_kop))
                       .group_by(DailyStat.kind).tuples())
        entries = dict(Entry.select(Entry.kind, fn.SUM(Entry.amount_kop))
                       .group_by(Entry.kind).tuples())
        assert {k: int(v) for k, v in by_kind.items()} == {k: int(v) for k, v in entries.items()}
        live = ExpiryDay.select(fn.COALESCE(fn.SUM(ExpiryDay.live_kop), 0)).scalar()
        assert live == Lot.select(fn.COALESCE(fn.SUM(Lot.remaining_kop), 0)).scalar()


def test_reversal_first_after_a_partly_spent_lot_expired(portal):
    """The sequence the random run found: the reversal expires the lot, gives the debit
    back into it, and must expire what it gave back under a key of its own."""
    _new_cards(portal)
    number = PHONES[0]
    operations.accrue(portal, number, 1_000_000, key="a", actor=ACTOR, now=T0)  # 300 ₽
    operations.debit(portal, number, 10_000, key="d", actor=ACTOR, reference="o1", now=T0)
    later = T0 + timedelta(days=366)
    result = reversals.reverse(portal, number, "o1", key="r", actor=ACTOR, now=later).result
    assert result["returned_debit_kop"] == 10_000
    card = Card.get(Card.number == number)
    assert card.balance_kop == 0
    kinds = [e.kind for e in Entry.select().where(Entry.card == card).order_by(Entry.id)]
    assert kinds == ["accrual", "debit", "expiry", "reversal", "expiry"]
    _check_invariants()
