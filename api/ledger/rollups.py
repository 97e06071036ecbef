"""Rollups for the program's numbers, folded from committed entries: the numbers page
reads these instead of scanning millions of entries or lots.

- DailyStat: each kind per portal and UTC day; an accrual also notes whether bonuses paid
  part of the same order (a debit with the same reference before it), for the average
  purchase with and without bonuses.
- ClientMonth and MonthStat: each card's purchases per month, and how many cards reached
  one (active) and two (repeat) purchases.
- ExpiryDay: the live bonuses per expiry date: lots opened, plus every allocation.

Why after commit: written inside each movement, these rows were shared by every movement
of a portal (one DailyStat row per day and kind), so every accrual of a portal queued
behind every other until COMMIT. Now a movement only leaves its Operation row at
`folded = 0`; `fold` adds a batch of such operations to the rollups and marks them
folded in one transaction, so each is counted exactly once (a concurrent folder waits
on the same rows and then finds them folded). Readers call `catch_up` first, so the
numbers always include every committed movement.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date

from peewee import EXCLUDED

from api.db import db, lock_rows
from api.models import Allocation, ClientMonth, DailyStat, Entry, ExpiryDay, Lot, MonthStat, \
    Operation, Portal

BATCH = 500  # operations per folding transaction
_DAY_SUMS = ("entries", "amount_kop", "purchase_kop", "bonus_orders", "bonus_order_kop")


def catch_up(portal: Portal) -> int:
    """Fold all of the portal's operations committed so far; how many were folded."""
    total = 0
    while True:
        folded = fold(portal)
        total += folded
        if folded < BATCH:
            return total


def fold(portal: Portal, limit: int = BATCH) -> int:
    with db.atomic():
        pending = (Operation.select(Operation.id)
                   .where((Operation.portal == portal) & (Operation.folded == 0))
                   .order_by(Operation.id).limit(limit))
        ids = [row[0] for row in lock_rows(pending).tuples()]
        if not ids:
            return 0
        entries = list(Entry.select(Entry.id, Entry.card, Entry.kind, Entry.amount_kop,
                                    Entry.reference, Entry.purchase_kop, Entry.created_at)
                       .where(Entry.operation.in_(ids)).order_by(Entry.id))
        _days(portal, entries)
        _months(portal, entries)
        _expiry(portal, [e.id for e in entries])
        Operation.update(folded=1).where(Operation.id.in_(ids)).execute()
    return len(ids)


def _days(portal: Portal, entries: list[Entry]) -> None:
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(_DAY_SUMS))
    for entry in entries:
        row = sums[(entry.created_at.date(), entry.kind)]
        row[0] += 1
        row[1] += entry.amount_kop
        if entry.kind == "accrual":
            purchase = entry.purchase_kop or 0
            row[2] += purchase
            if entry.reference and _paid_with_bonus(entry):
                row[3] += 1
                row[4] += purchase
    for (day, kind), values in sorted(sums.items()):  # one order: folders never deadlock
        data = dict(zip(_DAY_SUMS, values))
        DailyStat.insert(portal=portal, day=day, kind=kind, **data).on_conflict(
            conflict_target=[DailyStat.portal, DailyStat.day, DailyStat.kind],
            update={getattr(DailyStat, name): getattr(DailyStat, name) + getattr(EXCLUDED, name)
                    for name in _DAY_SUMS}).execute()


def _paid_with_bonus(accrual: Entry) -> bool:
    return Entry.select().where(
        (Entry.card == accrual.card_id) & (Entry.reference == accrual.reference)
        & (Entry.kind == "debit") & (Entry.id < accrual.id)).exists()


def _months(portal: Portal, entries: list[Entry]) -> None:
    bought = Counter((e.card_id, e.created_at.date().replace(day=1))
                     for e in entries if e.kind == "accrual")
    crossed: Counter = Counter()
    for (card_id, month), count in sorted(bought.items()):
        ClientMonth.insert(portal=portal, card=card_id, month=month, purchases=count).on_conflict(
            conflict_target=[ClientMonth.portal, ClientMonth.month, ClientMonth.card],
            update={ClientMonth.purchases: ClientMonth.purchases + EXCLUDED.purchases}).execute()
        after = ClientMonth.select(ClientMonth.purchases).where(
            (ClientMonth.portal == portal) & (ClientMonth.month == month)
            & (ClientMonth.card == card_id)).scalar()
        before = after - count
        # The first purchase makes a client active, the second a repeat one.
        crossed[(month, "active")] += int(before < 1 <= after)
        crossed[(month, "repeat")] += int(before < 2 <= after)
    for month in sorted({m for m, _ in crossed}):
        active, repeat = crossed[(month, "active")], crossed[(month, "repeat")]
        if active or repeat:
            MonthStat.insert(portal=portal, month=month, active=active, repeat=repeat).on_conflict(
                conflict_target=[MonthStat.portal, MonthStat.month],
                update={MonthStat.active: MonthStat.active + EXCLUDED.active,
                        MonthStat.repeat: MonthStat.repeat + EXCLUDED.repeat}).execute()


def _expiry(portal: Portal, entry_ids: list[int]) -> None:
    """Live bonuses per expiry day move with every lot opened and every allocation."""
    if not entry_ids:
        return
    live: Counter = Counter()
    for amount, expires_at in (Lot.select(Lot.amount_kop, Lot.expires_at)
                               .where(Lot.entry.in_(entry_ids)).tuples()):
        live[_day(expires_at)] += amount
    for amount, expires_at in (Allocation.select(Allocation.amount_kop, Lot.expires_at)
                               .join(Lot).where(Allocation.entry.in_(entry_ids)).tuples()):
        live[_day(expires_at)] += amount
    for day, delta in sorted(live.items()):
        if delta:
            ExpiryDay.insert(portal=portal, day=day, live_kop=delta).on_conflict(
                conflict_target=[ExpiryDay.portal, ExpiryDay.day],
                update={ExpiryDay.live_kop: ExpiryDay.live_kop + EXCLUDED.live_kop}).execute()


def _day(value) -> date:
    return value.date() if hasattr(value, "date") else date.fromisoformat(str(value)[:10])
