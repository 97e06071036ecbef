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


def _keyset(query, column, page_rows: int = PAGE_ROWS) -> Iterator[list]:
    """Pages of `query` in ascending `column` (the model's id)."""
    last = 0
    while True:
        page = list(query.where(column > last).order_by(column).limit(page_rows))
        if not page:
            return
        yield page
        last = page[-1].id


def card_rows(portal: Portal) -> Iterator[list]:
    query = Card.select().where(Card.portal == portal)
    for page in _keyset(query, Card.id):
        totals = _totals([card.id for card in page])
        for card in page:
            credit, debit = totals.get(card.id, (0, 0))
            yield [card.number, card.status, safe(card.last_name), safe(card.first_name),
                   safe(card.middle_name), safe(card.email),
                   card.birthdate.isoformat() if card.birthdate else "",
                   safe(card.client_category), safe(card.tier), format_kop(card.balance_kop),
                   format_kop(card.purchases_kop), format_kop(credit), format_kop(-debit),
                   card.created_at.isoformat(" ", "seconds")]


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
    query = (Entry.select(Entry, Card.number).join(Card)
             .where((Entry.portal == portal)
                    & (Entry.created_at >= datetime.combine(start, time()))
                    & (Entry.created_at < datetime.combine(end, time()))))
    for page in _keyset(query, Entry.id):
        for entry in page:
            yield [entry.id, entry.created_at.isoformat(" ", "seconds"), entry.card.number,
                   entry.kind, format_kop(entry.amount_kop), format_kop(entry.balance_after_kop),
                   safe(entry.reference), "" if entry.purchase_kop is None
                   else format_kop(entry.purchase_kop), safe(entry.actor), safe(entry.comment)]
