"""Lots: bonuses credited together. Spending takes the oldest-expiring first (FIFO),
so what expires later is exactly what the client has not spent.

The statements every operation runs are in api.ledger.sql; the Lot objects returned
carry the columns the ledger reads (`id`, `card_id`, `remaining_kop`, and `expires_at`
where a caller needs it), not necessarily the whole row.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from api.ledger import rollups, sql
from api.models import Allocation, Card, Entry, Lot


def _lot(**data) -> Lot:
    lot = Lot(__no_default__=True)
    lot.__data__ = data
    return lot


def open_lot(card: Card, entry: Entry, amount_kop: int, created: datetime,
             lifetime_days: int, expires_at: datetime | None = None) -> Lot:
    # An imported or transferred lot keeps the expiry it already had (expires_at).
    expires_at = expires_at or created + timedelta(days=lifetime_days)
    lot_id = sql.insert("insert_lot", card.id, entry.id, amount_kop, amount_kop,
                        sql.timestamp(expires_at))
    rollups.live(card.portal_id, expires_at.date(), amount_kop)
    return _lot(id=lot_id, card=card.id, entry=entry.id, amount_kop=amount_kop,
                remaining_kop=amount_kop, expires_at=expires_at)


def spendable(card: Card, now: datetime) -> list[Lot]:
    """The card's lots with bonuses left that have not expired, oldest-expiring first."""
    return [_lot(id=lot_id, card=card.id, remaining_kop=remaining)
            for lot_id, remaining in sql.rows("spendable_lots", card.id, sql.timestamp(now))]


def take(entry: Entry, lots, amount_kop: int) -> int:
    """Take up to amount_kop from the lots in order; record allocations; return what was taken."""
    taken = 0
    for lot in lots:
        if taken == amount_kop:
            break
        part = min(lot.remaining_kop, amount_kop - taken)
        if part <= 0:
            continue
        _move(entry, lot.id, -part)
        taken += part
    return taken


def give_back(entry: Entry, original: Entry) -> int:
    """Return to the very lots an entry took from (a reversed debit keeps its expiry dates)."""
    returned = 0
    for alloc in Allocation.select().where(Allocation.entry == original):
        _move(entry, alloc.lot_id, -alloc.amount_kop)
        returned += -alloc.amount_kop
    return returned


def _move(entry: Entry, lot_id: int, delta_kop: int) -> None:
    """Move a lot's remainder, record the allocation, and keep the expiry rollup in step."""
    expires_at = sql.row("take_from_lot", -delta_kop, lot_id)[0]
    sql.insert("insert_allocation", entry.id, lot_id, delta_kop)
    rollups.live(entry.portal_id, sql.date_of(expires_at), delta_kop)


def due(card: Card, now: datetime) -> list[Lot]:
    """The card's lots with bonuses left whose lifetime is over, oldest-expiring first."""
    to_python = Lot.expires_at.python_value  # SQLite hands back text
    return [_lot(id=lot_id, card=card.id, remaining_kop=remaining,
                 expires_at=to_python(expires_at))
            for lot_id, remaining, expires_at in sql.rows("due_lots", card.id,
                                                          sql.timestamp(now))]
