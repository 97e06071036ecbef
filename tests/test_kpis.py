"""The program's numbers against a small ledger computed by hand, an empty period, and
a period with only reversals."""
from __future__ import annotations

from datetime import date, datetime, timedelta

from api import kpis
from api.ledger import cards, operations, reversals
from api.models import Card, Notification

MAY = datetime(2027, 5, 10, 12)


def card(portal, phone, when, contact):
    made, _ = cards.create_card(portal, {"phone": phone, "last_name": "К", "first_name": "И",
                                         "client_category": "В", "contact_id": contact},
                                actor="t", now=when)
    return made


def test_numbers_of_a_hand_computed_month(portal):
    a = card(portal, "9160000001", MAY, 1)
    b = card(portal, "9160000002", MAY, 2)
    card(portal, "9160000003", datetime(2027, 4, 30), 3)  # issued in April
    # a: two purchases (the second partly paid with bonuses), b: one.
    operations.accrue(portal, a.number, 1_000_000, key="a1", actor="t", reference="o1", now=MAY)
    operations.debit(portal, a.number, 10_000, key="d1", actor="t", reference="o2", now=MAY)
    operations.accrue(portal, a.number, 2_000_000, key="a2", actor="t", reference="o2",
                      now=MAY + timedelta(days=7))
    operations.accrue(portal, b.number, 500_000, key="b1", actor="t", reference="o3", now=MAY)
    Notification.create(portal=portal, key="n1", channel="sms", template="x", recipient="1",
                        body="x", status="sent", sent_at=MAY)
    n = kpis.period(portal, *kpis.month_bounds(date(2027, 5, 1)))
    # accrued: 3 % of 10 000 = 300, 3 % of 20 000 = 600, 3 % of 5 000 = 150 → 1 050 ₽
    assert (n.accrued_kop, n.debited_kop, n.expired_kop) == (105_000, 10_000, 0)
    assert (n.cards_issued, n.active_clients, n.repeat_clients, n.purchases) == (2, 2, 1, 3)
    assert abs(n.redemption - 10_000 / 105_000) < 1e-12 and n.repeat_share == 0.5
    assert n.avg_with_bonus_kop == 2_000_000  # order o2 was partly paid with bonuses
    assert n.avg_without_bonus_kop == (1_000_000 + 500_000) // 2
    assert n.messages == {"sms": 1} and n.messages_sent == 1
    assert kpis.tiers(portal) == {"Базовый": 3}
    weeks = kpis.weekly(portal, date(2027, 5, 1), date(2027, 6, 1))
    by_week = {monday: (accrued, debited) for monday, accrued, debited in weeks}
    assert by_week[date(2027, 5, 10)] == (45_000, 10_000)  # the week of 10 May
    assert sum(w[1] for w in weeks) == 105_000


def test_an_empty_period_is_all_zeros_and_no_ratios(portal):
    n = kpis.period(portal, date(2027, 1, 1), date(2027, 2, 1))
    assert (n.accrued_kop, n.active_clients, n.purchases, n.cards_issued) == (0, 0, 0, 0)
    assert n.redemption is None and n.repeat_share is None and n.avg_with_bonus_kop is None


def test_a_period_with_only_reversals(portal):
    a = card(portal, "9160000001", MAY, 1)
    operations.accrue(portal, a.number, 1_000_000, key="a1", actor="t", reference="o1", now=MAY)
    reversals.reverse(portal, a.number, "o1", key="r1", actor="t", now=datetime(2027, 6, 3))
    june = kpis.period(portal, *kpis.month_bounds(date(2027, 6, 1)))
    assert (june.accrued_kop, june.debited_kop, june.reversed_kop) == (0, 0, -30_000)
    assert june.active_clients == 0 and june.redemption is None


def test_expiring_in_the_next_90_days_by_week(portal):
    a = card(portal, "9160000001", MAY, 1)
    operations.accrue(portal, a.number, 1_000_000, key="a1", actor="t", now=MAY)
    soon = MAY + timedelta(days=300)
    assert kpis.expiring(portal, now=soon) == [(date(2028, 5, 8), 30_000)]
    assert kpis.expiring(portal, now=MAY) == []
    assert Card.get_by_id(a.id).balance_kop == 30_000
