"""The CRM tabs: the contact tab from our database after one frame check, the deal tab
with what the deal accrued and debited, its actions, and who may see what."""
from __future__ import annotations

import json
import re

import pytest
from test_pages import (ADMIN, FRAME_FORM, MANAGER, QUERY, Frame, allow, b24p,  # noqa: F401
                        empty_portal_settings, moved, text)

from api.ledger import cards, operations
from api.models import Entry


@pytest.fixture(autouse=True)
def _clean(app):
    empty_portal_settings()


def open_tab(client, where, entity_id, auth=ADMIN):
    form = {**FRAME_FORM, "AUTH_ID": auth, "PLACEMENT": f"CRM_{where.upper()}_DETAIL_TAB",
            "PLACEMENT_OPTIONS": json.dumps({"ID": str(entity_id),
                                             "URI": f"/crm/{where}/details/{entity_id}/"})}
    return client.post(f"/b24/placements/{where}", query_string=QUERY, data=form)


def a_card(portal, contact=42):
    card, _ = cards.create_card(portal, {"phone": "9161234567", "last_name": "Петрова",
                                         "first_name": "Анна", "client_category": "Врач",
                                         "contact_id": contact}, actor="t")
    return card


def test_contact_tab_shows_the_card_after_two_bitrix24_requests(client, installed, b24p):
    card = a_card(installed)
    b24p.add_contact(42)
    operations.accrue(installed, card.number, 6_000_000, key="a", actor="b24:user_7 Пётр",
                      reference="deal:7")
    b24p.requests = 0
    page = open_tab(client, "contact", 42)
    # profile, then the contact read with the viewer's token; the rest is our database
    assert page.status_code == 200 and b24p.requests == 2
    body = text(page)
    assert "79161234567" in body and "Серебряный" in body and "1\u00a0800" in body
    assert "b24:user_7 Пётр" in body and "deal:7" in body
    assert 'id="adjust-form"' in body
    assert "frame-ancestors" in page.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in page.headers


def test_contact_without_a_card_says_why_and_offers_to_issue_one(client, installed, b24p):
    b24p.add_contact(55)
    body = text(open_tab(client, "contact", 55))
    assert "Бонусной карты нет" in body and "contact_id=55" in body


def test_a_manager_sees_the_tab_by_default_and_adjusts_only_when_allowed(client, installed,
                                                                         b24p):
    a_card(installed)
    b24p.add_contact(42)
    page = open_tab(client, "contact", 42, auth=MANAGER)  # no right granted in our settings
    body = text(page)
    assert page.status_code == 200 and "79161234567" in body
    assert 'id="adjust-form"' not in body and "lp-alert--ok" not in body
    allow(installed, view_cards=False, adjust=True)
    assert 'id="adjust-form"' in text(open_tab(client, "contact", 42, auth=MANAGER))


def test_a_contact_bitrix24_hides_from_the_manager_shows_nothing(client, installed, b24p):
    a_card(installed)
    b24p.add_contact(42)
    b24p.deny(MANAGER, "crm.contact.get", 42)
    page = open_tab(client, "contact", 42, auth=MANAGER)
    body = text(page)
    assert page.status_code == 403 and "79161234567" not in body
    # The message once, styled as an error, never in the green "done" banner.
    assert body.count("Битрикс24 не дал прочитать") == 1
    assert "lp-alert--error" in body and "lp-alert--ok" not in body


def test_a_forged_frame_gets_401_and_shows_nothing(client, installed, b24p):
    a_card(installed)
    page = open_tab(client, "contact", 42, auth="forged-token")
    assert page.status_code == 401 and "79161234567" not in text(page)


def test_deal_tab_shows_accrued_and_debited_and_can_reverse(client, installed, b24p):
    card = a_card(installed)
    b24p.deals[7] = {"ID": "7", "OPPORTUNITY": "20000.00", "CONTACT_ID": "42"}
    operations.adjust(installed, card.number, 100_000, key="j", actor="t", reason="старт")
    operations.debit(installed, card.number, 20_000, key="d", actor="t", reference="deal:7")
    operations.accrue(installed, card.number, 2_000_000, key="a", actor="t", reference="deal:7")
    body = text(open_tab(client, "deal", 7))
    assert re.search(r'id="deal-accrued">600', body) and re.search(r'id="deal-debited">200', body)
    assert "можно отменить" in body and 'id="reverse-form"' in body
    assert 'id="debit-form"' in body  # 100 % share of 20 000 less 200 paid: the balance caps it


def test_deal_debit_through_the_tab_applies_once(client, installed, b24p):
    card = a_card(installed)
    b24p.deals[9] = {"ID": "9", "OPPORTUNITY": "1000.00", "CONTACT_ID": "42"}
    operations.adjust(installed, card.number, 100_000, key="j", actor="t", reason="старт")
    frame = Frame(client)
    page = text(open_tab(client, "deal", 9))
    frame.token = re.search(r'name="loyalty-token" content="([^"]+)"', page)[1]
    frame.csrf = re.search(r'name="loyalty-csrf" content="([^"]+)"', page)[1]
    key = re.search(r'id="debit-form".*?name="key" value="([^"]+)"', page, re.S)[1]
    form = {"key": key, "card": card.number, "amount": "150", "order_amount": "1000.00",
            "confirmed": "1"}
    for _ in range(2):  # a double click
        assert moved(frame.post("/b24/placements/deal/9/debit", form))
    [debit] = Entry.select().where(Entry.kind == "debit")
    assert debit.amount_kop == -15_000 and debit.reference == "deal:9"
    assert debit.actor.startswith("b24:user_1")


def test_deal_tab_without_a_known_contact(client, installed, b24p):
    b24p.deals[5] = {"ID": "5", "OPPORTUNITY": "100.00", "CONTACT_ID": "0"}
    assert "Бонусной карты нет" in text(open_tab(client, "deal", 5))
