"""Exports as CSV: every card with its balance, tier and totals, and any period's
movements. Read by keyset pages of PAGE_ROWS (`id > last`), never one big result:
psycopg2 would otherwise load a million rows into memory before the first one is
written. Rows come out as lists ready for api.data.csvout.pieces.
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Iterator

from peewee import Case, fn

from api.data.csvout import safe
from api.ledger.money import format_kop
from api.models import Card, Entry, Portal

PAGE_ROWS = 2_000

CARD_HEADER = ("card", "status", "last_name", "first_name", "middle_name", "email",
               "birthdate", "category", "tier", "balance", "purchases", "accrued_total",
               "spent_total", "created_at_utc")
MOVEMENT_HEADER = ("id", "created_at_utc", "card", "kind", "amount", "balance_after",
                   "reference", "purchase", "actor", "comment")


def _keyset(query, column, page_rows: int = PAGE_ROWS) -> Iterator[list[tuple]]:
    """Pages of `query` (tuples whose first value is `column`, the id) in ascending id.
    Tuples, not models: building a model per row would cost more than the rest."""
    last = 0
    while True:
        page = list(query.where(column > last).order_by(column).limit(page_rows).tuples())
        if not page:
            return
        yield page
        last = page[-1][0]


CARD_COLUMNS = (Card.id, Card.number, Card.status, Card.last_name, Card.first_name,
                Card.middle_name, Card.email, Card.birthdate, Card.client_category, Card.tier,
                Card.balance_kop, Card.purchases_kop, Card.created_at)


def card_rows(portal: Portal) -> Iterator[list]:
    query = Card.select(*CARD_COLUMNS).where(Card.portal == portal)
    for page in _keyset(query, Card.id):
        totals = _totals([row[0] for row in page])
        for (card_id, number, status, last, first, middle, email, born, category, tier,
             balance, purchases, created) in page:
            credit, debit = totals.get(card_id, (0, 0))
            yield [number, status, safe(last), safe(first), safe(middle), safe(email),
                   _iso(born), safe(category), safe(tier), format_kop(balance),
                   format_kop(purchases), format_kop(credit), format_kop(-debit), _iso(created)]


def _iso(value) -> str:
    """A date or timestamp as text (SQLite hands back text already)."""
    if value is None:
        return ""
    return value.isoformat(" ", "seconds") if isinstance(value, datetime) else \
        value.isoformat() if isinstance(value, date) else str(value)[:19]


def _totals(card_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Bonuses credited and spent per card: accruals and gifts in, debits out (a
    transfer or an expiry counts where its sign puts it)."""
    credit = fn.SUM(Case(None, [(Entry.amount_kop > 0, Entry.amount_kop)], 0))
    debit = fn.SUM(Case(None, [((Entry.amount_kop < 0) & (Entry.kind == "debit"),
                                Entry.amount_kop)], 0))
    rows = (Entry.select(Entry.card, credit.alias("c"), debit.alias("d"))
            .where(Entry.card.in_(card_ids) & (Entry.kind != "import")).group_by(Entry.card)
            .tuples())
    return {card_id: (int(c or 0), int(d or 0)) for card_id, c, d in rows}


def movement_rows(portal: Portal, start: date, end: date) -> Iterator[list]:
    """Every entry from `start` (inclusive) to `end` (exclusive), UTC days."""
    query = (Entry.select(Entry.id, Entry.created_at, Card.number, Entry.kind, Entry.amount_kop,
                          Entry.balance_after_kop, Entry.reference, Entry.purchase_kop,
                          Entry.actor, Entry.comment).join(Card)
             .where((Entry.portal == portal)
                    & (Entry.created_at >= datetime.combine(start, time()))
                    & (Entry.created_at < datetime.combine(end, time()))))
    for page in _keyset(query, Entry.id):
        for entry_id, created, number, kind, amount, after, reference, purchase, actor, \
                comment in page:
            yield [entry_id, _iso(created), number, kind, format_kop(amount), format_kop(after),
                   safe(reference), "" if purchase is None else format_kop(purchase),
                   safe(actor), safe(comment)]
