"""The numbers page: figures, charts as SVG, links to the clients behind a figure, CSV."""
from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from test_pages import ADMIN, MANAGER, Frame, allow, b24p, empty_portal_settings, text  # noqa: F401

from api.ledger import cards, operations

MAY = datetime(2027, 5, 10, 12)


@pytest.fixture(autouse=True)
def _clean(app):
    empty_portal_settings()


@pytest.fixture
def ledger(installed):
    for i, contact in enumerate((1, 2)):
        card, _ = cards.create_card(installed, {"phone": f"916000000{i}", "last_name": f"К{i}",
                                                "first_name": "И", "client_category": "В",
                                                "contact_id": contact}, actor="t", now=MAY)
        operations.accrue(installed, card.number, 1_000_000, key=f"a{i}", actor="t", now=MAY)
    operations.accrue(installed, card.number, 500_000, key="again", actor="t", now=MAY)
    return installed


def test_figures_charts_and_links(client, ledger, b24p):
    frame = Frame(client)
    frame.login(ADMIN)
    page = frame.get("/b24/app/numbers", start="2027-05-01", end="2027-06-01")
    body = text(page)
    assert page.status_code == 200
    assert 'id="accrued">750' in body and '>2</button>' in body and "issued_from=2027-05-01" in body
    # Nothing expires within 90 days of today (the bonuses were accrued in 2027): said so.
    assert body.count("<svg") == 2 and "Сгорит в ближайшие 90 дней: нет данных" in body
    assert "month=2027-05-01" in body and "tier=" in body
    issued = text(frame.get("/b24/app/clients", issued_from="2027-05-01", issued_to="2027-06-01"))
    assert "79160000000" in issued and "79160000001" in issued
    none = text(frame.get("/b24/app/clients", issued_from="2027-06-01", issued_to="2027-07-01"))
    assert "79160000000" not in none
    active = text(frame.get("/b24/app/clients", month="2027-05-01", repeat="1"))
    assert "79160000001" in active and "79160000000" not in active


def test_csv_of_the_period(client, ledger, b24p):
    frame = Frame(client)
    frame.login(ADMIN)
    response = frame.get("/b24/app/numbers/movements.csv", start="2027-05-01", end="2027-06-01")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:4] == ["id", "created_at_utc", "card", "kind"]
    assert [r[3] for r in rows[1:]] == ["accrual", "accrual", "accrual"]
    assert rows[1][4] == "300.00"


def test_needs_the_view_right(client, ledger, b24p):
    frame = Frame(client)
    allow(ledger, view_cards=True)
    frame.login(MANAGER)
    assert frame.get("/b24/app/numbers").status_code == 200
    allow(ledger, view_cards=False)
    assert frame.get("/b24/app/numbers").status_code == 403
