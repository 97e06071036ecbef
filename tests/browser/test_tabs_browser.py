"""The CRM tabs and the numbers page in a real browser, framed as Bitrix24 frames them."""
from __future__ import annotations

import json

import pytest
from test_pages import ADMIN
from test_pages_browser import app_frame, expect, new_card

from api.db import connection
from api.ledger import operations

pytestmark = pytest.mark.slow


def open_tab(page, live, where: str, entity_id: int):
    options = json.dumps({"ID": str(entity_id), "URI": f"/crm/{where}/details/{entity_id}/"})
    page.goto(live.host_url(ADMIN, target=f"/b24/placements/{where}",
                            placement=f"CRM_{where.upper()}_DETAIL_TAB", options=options))
    return app_frame(page)


def test_the_contact_tab(page, live, shot):
    card = new_card(live.portal, balance_kop=50_000)
    live.fake.add_contact(42)  # the viewer may read it: Bitrix24 is asked with their token
    live.fake.add_contact(77)
    with connection():
        operations.accrue(live.portal, card.number, 6_000_000, key="a", actor="b24:user_7 Пётр",
                          reference="deal:7")
    tab = open_tab(page, live, "contact", 42)
    expect()(tab.locator("#card-number")).to_have_text("79161234567")
    expect()(tab.locator("#card-tier")).to_contain_text("Серебряный")
    expect()(tab.locator("#history tbody tr")).to_have_count(2)
    shot("13-contact-tab")
    missing = open_tab(page, live, "contact", 77)
    expect()(missing.locator("#create-card")).to_be_visible()
    shot("14-contact-tab-without-card")


def test_the_deal_tab(page, live, shot):
    card = new_card(live.portal, balance_kop=100_000)
    live.fake.deals[7] = {"ID": "7", "OPPORTUNITY": "20000.00", "CONTACT_ID": "42"}
    with connection():
        operations.debit(live.portal, card.number, 20_000, key="d", actor="t", reference="deal:7")
        operations.accrue(live.portal, card.number, 2_000_000, key="a", actor="t",
                          reference="deal:7")
    tab = open_tab(page, live, "deal", 7)
    expect()(tab.locator("#deal-accrued")).to_have_text("600")
    expect()(tab.locator("#deal-debited")).to_have_text("200")
    expect()(tab.locator("#reverse-form")).to_be_visible()
    shot("15-deal-tab")


def test_the_numbers_page(page, live, shot):
    card = new_card(live.portal)
    with connection():
        operations.accrue(live.portal, card.number, 1_000_000, key="a", actor="t")
    page.goto(live.host_url(ADMIN))
    app = app_frame(page)
    app.locator("nav button", has_text="Показатели").click()
    expect()(app.locator("#accrued")).to_have_text("300")
    expect()(app.locator("svg.lp-chart")).to_have_count(2)  # accrued/debited, tiers
    expect()(app.locator(".lp-chart-empty")).to_contain_text("нет данных")  # nothing expires
    shot("16-numbers")
