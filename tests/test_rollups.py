"""The program's rollups are folded from committed operations, exactly once, and no
movement writes a row that every other movement of the portal writes too."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from api import kpis
from api.ledger import cards, operations, rollups
from api.models import ClientMonth, DailyStat, ExpiryDay, MonthStat, Operation

T0 = datetime(2026, 3, 10, 12, 0)
PHONES = ("79160000001", "79160000002")


def _cards(portal):
    for phone in PHONES:
        cards.create_card(portal, {"phone": phone, "last_name": "Т", "first_name": "К",
                                   "client_category": "В"}, actor="t", now=T0)


def _rollup_rows() -> int:
    return sum(m.select().count() for m in (DailyStat, ClientMonth, MonthStat, ExpiryDay))


def test_a_movement_writes_no_shared_rollup_row(portal):
    _cards(portal)
    operations.accrue(portal, PHONES[0], 100_000, key="a1", actor="t", now=T0)
    operations.debit(portal, PHONES[0], 1_000, key="d1", actor="t", now=T0)
    assert _rollup_rows() == 0  # nothing shared was locked by either movement
    assert Operation.select().where(Operation.folded == 0).count() == 2


def test_folding_counts_each_operation_once(portal):
    _cards(portal)
    operations.accrue(portal, PHONES[0], 100_000, key="a1", actor="t", now=T0)
    operations.accrue(portal, PHONES[1], 200_000, key="a2", actor="t", now=T0)
    operations.accrue(portal, PHONES[1], 300_000, key="a3", actor="t", now=T0)
    start, end = date(2026, 3, 1), date(2026, 4, 1)
    first = kpis.period(portal, start, end)
    assert rollups.catch_up(portal) == 0  # all folded by the read
    again = kpis.period(portal, start, end)
    assert first == again
    day = DailyStat.get(DailyStat.kind == "accrual")
    assert (day.entries, day.purchase_kop) == (3, 600_000)
    month = MonthStat.get()
    assert (month.active, month.repeat) == (2, 1)
    operations.debit(portal, PHONES[1], 1_000, key="d1", actor="t", now=T0)
    assert rollups.catch_up(portal) == 1  # only the new one
    assert ExpiryDay.get().live_kop == 3_000 + 6_000 + 9_000 - 1_000
    assert ExpiryDay.get().day == (T0 + timedelta(days=365)).date()


def test_the_scheduler_folds_without_waiting_for_a_reader(app, portal):
    _cards(portal)
    operations.accrue(portal, PHONES[0], 100_000, key="a1", actor="t", now=T0)
    assert app.extensions["worker"].fold_rollups() == 1
    assert Operation.select().where(Operation.folded == 0).count() == 0
    assert DailyStat.get(DailyStat.kind == "accrual").entries == 1
    assert app.extensions["worker"].fold_rollups() == 0  # once
