"""The program's numbers for a period, per portal: from rollups and indexed counts only,
so the page costs the same for a thousand cards or a million.

Periods are [start, end) in days. Active and repeat clients come from monthly rollups,
so they count whole calendar months overlapping the period (a month's page is exact).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from peewee import fn

from api.clock import utcnow
from api.ledger import rollups
from api.models import Card, ClientMonth, DailyStat, ExpiryDay, MonthStat, Notification, Portal

CREDITS = ("accrual", "welcome", "birthday")


@dataclass
class Numbers:
    start: date
    end: date
    cards_issued: int = 0
    active_clients: int = 0
    repeat_clients: int = 0
    purchases: int = 0
    purchase_kop: int = 0
    accrued_kop: int = 0
    debited_kop: int = 0
    expired_kop: int = 0
    reversed_kop: int = 0
    bonus_orders: int = 0
    bonus_order_kop: int = 0
    messages: dict = field(default_factory=dict)

    @property
    def redemption(self) -> float | None:
        """Debited ÷ accrued, a ratio for display only (money stays in kopecks)."""
        return self.debited_kop / self.accrued_kop if self.accrued_kop else None

    @property
    def repeat_share(self) -> float | None:
        return self.repeat_clients / self.active_clients if self.active_clients else None

    @property
    def avg_with_bonus_kop(self) -> int | None:
        return self.bonus_order_kop // self.bonus_orders if self.bonus_orders else None

    @property
    def avg_without_bonus_kop(self) -> int | None:
        plain = self.purchases - self.bonus_orders
        return (self.purchase_kop - self.bonus_order_kop) // plain if plain > 0 else None

    @property
    def messages_sent(self) -> int:
        return sum(self.messages.values())


def month_bounds(day: date) -> tuple[date, date]:
    start = day.replace(day=1)
    return start, (start + timedelta(days=32)).replace(day=1)


def period(portal: Portal, start: date, end: date) -> Numbers:
    rollups.catch_up(portal)  # the rollups are folded after commit: include every movement
    numbers = Numbers(start, end)
    for row in (DailyStat.select(DailyStat.kind, fn.SUM(DailyStat.entries).alias("n"),
                                 fn.SUM(DailyStat.amount_kop).alias("kop"),
                                 fn.SUM(DailyStat.purchase_kop).alias("buy"),
                                 fn.SUM(DailyStat.bonus_orders).alias("bo"),
                                 fn.SUM(DailyStat.bonus_order_kop).alias("bok"))
                .where((DailyStat.portal == portal) & (DailyStat.day >= start) & (DailyStat.day < end))
                .group_by(DailyStat.kind)):
        _add(numbers, row)
    numbers.cards_issued = Card.select().where(
        (Card.portal == portal) & (Card.created_at >= _midnight(start))
        & (Card.created_at < _midnight(end))).count()
    numbers.active_clients, numbers.repeat_clients = _clients(portal, start, end)
    numbers.messages = _messages(portal, start, end)
    return numbers


def _add(numbers: Numbers, row) -> None:
    kop = int(row.kop or 0)
    if row.kind in CREDITS:
        numbers.accrued_kop += kop
    if row.kind == "accrual":
        numbers.purchases, numbers.purchase_kop = int(row.n), int(row.buy or 0)
        numbers.bonus_orders, numbers.bonus_order_kop = int(row.bo or 0), int(row.bok or 0)
    elif row.kind == "debit":
        numbers.debited_kop = -kop
    elif row.kind == "expiry":
        numbers.expired_kop = -kop
    elif row.kind == "reversal":
        numbers.reversed_kop = kop


def _clients(portal: Portal, start: date, end: date) -> tuple[int, int]:
    first, last = start.replace(day=1), (end - timedelta(days=1)).replace(day=1)
    per_card = (ClientMonth.select(ClientMonth.card, fn.SUM(ClientMonth.purchases).alias("n"))
                .where((ClientMonth.portal == portal) & (ClientMonth.month >= first)
                       & (ClientMonth.month <= last)).group_by(ClientMonth.card))
    if first == last:  # one month: its rollup row
        row = MonthStat.get_or_none((MonthStat.portal == portal) & (MonthStat.month == first))
        return (row.active, row.repeat) if row else (0, 0)
    rows = per_card.alias("pc")
    active = ClientMonth.select(fn.COUNT(rows.c.card_id)).from_(rows).scalar() or 0
    repeat = ClientMonth.select(fn.COUNT(rows.c.card_id)).from_(rows).where(rows.c.n > 1).scalar() or 0
    return int(active), int(repeat)


def _messages(portal: Portal, start: date, end: date) -> dict:
    rows = (Notification.select(Notification.channel, fn.COUNT(Notification.id).alias("n"))
            .where((Notification.portal == portal) & (Notification.status == "sent")
                   & (Notification.sent_at >= _midnight(start)) & (Notification.sent_at < _midnight(end)))
            .group_by(Notification.channel))
    return {row.channel: int(row.n) for row in rows}


def tiers(portal: Portal) -> dict[str, int]:
    rows = (Card.select(Card.tier, fn.COUNT(Card.id).alias("n")).where(Card.portal == portal)
            .group_by(Card.tier))
    return {row.tier: int(row.n) for row in rows}


def weekly(portal: Portal, start: date, end: date) -> list[tuple[date, int, int]]:
    """[(monday, accrued_kop, debited_kop)] for each week touching the period."""
    rollups.catch_up(portal)
    weeks: dict[date, list[int]] = {}
    monday = start - timedelta(days=start.weekday())
    while monday < end:
        weeks[monday] = [0, 0]
        monday += timedelta(days=7)
    for row in (DailyStat.select(DailyStat.day, DailyStat.kind, DailyStat.amount_kop)
                .where((DailyStat.portal == portal) & (DailyStat.day >= start) & (DailyStat.day < end)
                       & DailyStat.kind.in_([*CREDITS, "debit"]))):
        day = _as_date(row.day)
        slot = weeks[day - timedelta(days=day.weekday())]
        slot[0 if row.kind in CREDITS else 1] += abs(int(row.amount_kop))
    return [(week, kop[0], kop[1]) for week, kop in weeks.items()]


def expiring(portal: Portal, *, days: int = 90, now: datetime | None = None) -> list[tuple[date, int]]:
    """[(monday, kop)] of live bonuses expiring in the next `days`, by week (from ExpiryDay)."""
    rollups.catch_up(portal)
    today = (now or utcnow()).date()
    weeks: dict[date, int] = {}
    for row in (ExpiryDay.select(ExpiryDay.day, ExpiryDay.live_kop)
                .where((ExpiryDay.portal == portal) & (ExpiryDay.day > today)
                       & (ExpiryDay.day <= today + timedelta(days=days)) & (ExpiryDay.live_kop > 0))):
        day = _as_date(row.day)
        monday = day - timedelta(days=day.weekday())
        weeks[monday] = weeks.get(monday, 0) + int(row.live_kop)
    return sorted(weeks.items())


def _as_date(value) -> date:
    """Drivers hand back a date, a datetime or ISO text depending on the database."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)
