"""Rollups written with each entry, in its transaction: the program's numbers read these
instead of scanning millions of entries or lots.

- DailyStat: each kind per portal and UTC day; an accrual also notes whether bonuses paid
  part of the same order (a debit with the same reference), for the average purchase
  with and without bonuses.
- ClientMonth and MonthStat: each card's purchases per month, and how many cards reached
  one (active) and two (repeat) purchases.
- ExpiryDay: the live bonuses per expiry date, moved wherever a lot's remainder moves.
The statements are in api.ledger.sql with the rest of the hot path.
"""
from __future__ import annotations

from datetime import date, datetime

from api.ledger import sql


def record(portal_id: int, card_id: int, kind: str, amount_kop: int, created: datetime,
           reference: str | None = None, purchase_kop: int | None = None) -> None:
    day, with_bonus, purchase = created.date(), 0, 0
    if kind == "accrual":
        purchase = purchase_kop or 0
        if reference:
            with_bonus = int(sql.row("paid_with_bonus", card_id, reference) is not None)
    sql.run("rollup_day", portal_id, sql.day(day), kind, amount_kop, purchase, with_bonus,
            purchase if with_bonus else 0)
    if kind == "accrual":
        _client_month(portal_id, card_id, day.replace(day=1))


def _client_month(portal_id: int, card_id: int, month: date) -> None:
    purchases = sql.row("rollup_client_month", portal_id, card_id, sql.day(month))[0]
    if purchases in (1, 2):  # the first purchase makes a client active, the second a repeat
        sql.run("rollup_month", portal_id, sql.day(month), int(purchases == 1),
                int(purchases == 2))


def live(portal_id: int, expires_on: date, delta_kop: int) -> None:
    """A lot's remainder moved by delta_kop: the bonuses expiring that day follow."""
    if delta_kop:
        sql.run("rollup_expiry", portal_id, sql.day(expires_on), delta_kop)
