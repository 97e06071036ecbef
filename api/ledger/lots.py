"""Lots: bonuses credited together. Spending takes the oldest-expiring first (FIFO),
so what expires later is exactly what the client has not spent."""
from __future__ import annotations

from datetime import datetime, timedelta

from api.models import Allocation, Card, Entry, Lot


def open_lot(card: Card, entry: Entry, amount_kop: int, created: datetime,
             lifetime_days: int) -> Lot:
    return Lot.create(card=card, entry=entry, amount_kop=amount_kop, remaining_kop=amount_kop,
                      expires_at=created + timedelta(days=lifetime_days))


def spendable(card: Card, now: datetime):
    return (Lot.select()
            .where((Lot.card == card) & (Lot.remaining_kop > 0) & (Lot.expires_at > now))
            .order_by(Lot.expires_at, Lot.id))


def take(entry: Entry, lots, amount_kop: int) -> int:
    """Take up to amount_kop from the lots in order; record allocations; return what was taken."""
    taken = 0
    for lot in lots:
        if taken == amount_kop:
            break
        part = min(lot.remaining_kop, amount_kop - taken)
        if part <= 0:
            continue
        Lot.update(remaining_kop=Lot.remaining_kop - part).where(Lot.id == lot.id).execute()
        Allocation.create(entry=entry, lot=lot, amount_kop=-part)
        taken += part
    return taken


def give_back(entry: Entry, original: Entry) -> int:
    """Return to the very lots an entry took from (a reversed debit keeps its expiry dates)."""
    returned = 0
    for alloc in Allocation.select().where(Allocation.entry == original):
        Lot.update(remaining_kop=Lot.remaining_kop - alloc.amount_kop).where(
            Lot.id == alloc.lot_id).execute()
        Allocation.create(entry=entry, lot=alloc.lot_id, amount_kop=-alloc.amount_kop)
        returned += -alloc.amount_kop
    return returned


def due(card: Card, now: datetime):
    return (Lot.select()
            .where((Lot.card == card) & (Lot.remaining_kop > 0) & (Lot.expires_at <= now))
            .order_by(Lot.expires_at, Lot.id))
