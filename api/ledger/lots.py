"""Lots: bonuses credited together. Spending takes the oldest-expiring first (FIFO),
so what expires later is exactly what the client has not spent.

The statements every operation runs are in api.ledger.sql; the Lot objects returned
carry the columns the ledger reads (`id`, `card_id`, `remaining_kop`, `expires_at`),
not necessarily the whole row.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from api.ledger import sql
from api.models import Allocation, Card, Entry, Lot

_EXPIRES = sql.reader(Lot.expires_at)  # SQLite hands back text


def _lot(**data) -> Lot:
    lot = Lot(__no_default__=True)
    lot.__data__ = data
    return lot


def open_lot(card: Card, entry: Entry, amount_kop: int, created: datetime,
             lifetime_days: int, expires_at: datetime | None = None) -> None:
    """A new lot for a credit's entry. Nothing waits for its id, so on PostgreSQL the
    INSERT goes out with the operation's next statement (sql.later)."""
    # An imported or transferred lot keeps the expiry it already had (expires_at).
    expires_at = expires_at or created + timedelta(days=lifetime_days)
    sql.later("insert_lot", card.id, entry.id, amount_kop, amount_kop, sql.timestamp(expires_at))


def _read(name: str, card_id: int, *params) -> list[Lot]:
    return [_lot(id=lot_id, card=card_id, remaining_kop=remaining, expires_at=_EXPIRES(expires))
            for lot_id, remaining, expires in sql.rows(name, card_id, *params)]


def live(card: Card) -> list[Lot]:
    """The card's lots with bonuses left, oldest-expiring first."""
    return _read("live_lots", card.id)


def split(lots: list[Lot], now: datetime) -> tuple[list[Lot], list[Lot]]:
    """(due: lifetime over, spendable: not yet), both oldest-expiring first."""
    return ([lot for lot in lots if lot.expires_at <= now],
            [lot for lot in lots if lot.expires_at > now])


def spendable(card: Card, now: datetime) -> list[Lot]:
    """The card's lots with bonuses left that have not expired, oldest-expiring first."""
    return split(live(card), now)[1]


def due(card: Card, now: datetime) -> list[Lot]:
    """The card's lots with bonuses left whose lifetime is over, oldest-expiring first."""
    return _read("due_lots", card.id, sql.timestamp(now))


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
        lot.remaining_kop -= part
        taken += part
    return taken


def held_take_oldest(card: Card, amount_kop: int, now: datetime) -> tuple[int, int | None]:
    """PostgreSQL: what the card's live holds reserve, and take_oldest's lot if the amount
    also fits the balance less that; one statement (sql "held_take_oldest")."""
    held, lot_id = sql.row("held_take_oldest", card.id, now, amount_kop, card.id, amount_kop,
                           now, amount_kop, card.balance_kop)
    return int(held), lot_id


def take_oldest(card: Card, amount_kop: int, now: datetime) -> int | None:
    """The whole amount from the oldest live lot, if that lot is not due (so no lot is)
    and covers it: the lot's id; else None, with nothing changed."""
    row = sql.row("take_oldest_lot", amount_kop, card.id, amount_kop, sql.timestamp(now))
    return row[0] if row else None


def taken(entry: Entry, lot_id: int, amount_kop: int) -> None:
    """Record what take_oldest took, once the entry exists."""
    sql.later("insert_allocation", entry.id, lot_id, -amount_kop)


def give_back(entry: Entry, original: Entry) -> int:
    """Return to the very lots an entry took from (a reversed debit keeps its expiry dates)."""
    returned = 0
    for alloc in Allocation.select().where(Allocation.entry == original):
        _move(entry, alloc.lot_id, -alloc.amount_kop)
        returned += -alloc.amount_kop
    return returned


def _move(entry: Entry, lot_id: int, delta_kop: int) -> None:
    """Move a lot's remainder and record the allocation (the expiry rollup is folded
    from allocations later, api.ledger.rollups)."""
    sql.later("take_from_lot", -delta_kop, lot_id)  # no answer needed: sent with the next
    sql.later("insert_allocation", entry.id, lot_id, delta_kop)
