"""Reading the ledger: a card's entries, newest first, and what expires soon."""
from __future__ import annotations

from datetime import datetime, timedelta

from peewee import fn

from api.clock import utcnow
from api.models import Card, Entry, Lot

PAGE_MAX = 100


def entries(card: Card, *, page: int = 1, per_page: int = 50, kind: str | None = None):
    """A page of entries and whether there are more (no COUNT over a long history)."""
    per_page = max(1, min(per_page, PAGE_MAX))
    query = Entry.select().where(Entry.card == card)
    if kind:
        query = query.where(Entry.kind == kind)
    rows = list(query.order_by(Entry.id.desc()).offset((max(page, 1) - 1) * per_page)
                .limit(per_page + 1))
    return rows[:per_page], len(rows) > per_page


def expiring(card: Card, *, days: int = 30, now: datetime | None = None) -> list[tuple]:
    """[(expires_at, amount_kop)] of bonuses that expire within `days`, soonest first."""
    now = now or utcnow()
    rows = (Lot.select(Lot.expires_at, fn.SUM(Lot.remaining_kop).alias("kop"))
            .where((Lot.card == card) & (Lot.remaining_kop > 0) & (Lot.expires_at > now)
                   & (Lot.expires_at <= now + timedelta(days=days)))
            .group_by(Lot.expires_at).order_by(Lot.expires_at))
    return [(row.expires_at, int(row.kop)) for row in rows]


def balance_from_entries(card: Card) -> int:
    """The balance the entries say: checks the cached one (tests, audits)."""
    return int(Entry.select(fn.COALESCE(fn.SUM(Entry.amount_kop), 0))
               .where(Entry.card == card).scalar())
