"""Issue 11 in the frame pages: whose token reads the CRM, tokens out of URLs, a token from
a log opens nothing, forged frames cost the portal nothing, the admin's frame heals tokens."""
from __future__ import annotations

import re

import pytest
from test_pages import (ADMIN, MANAGER, Frame, allow, b24p, empty_portal_settings,  # noqa: F401
                        frame_user, moved, text)
from test_tabs import a_card, open_tab

from api.ledger import operations
from api.ledger import rules as rules_mod
from api.models import Entry, Portal


@pytest.fixture(autouse=True)
def _clean(app):
    empty_portal_settings()


def tab_frame(client, page) -> Frame:
    frame = Frame(client)
    frame.token = re.search(r'name="loyalty-token" content="([^"]+)"', text(page))[1]
    frame.csrf = re.search(r'name="loyalty-csrf" content="([^"]+)"', text(page))[1]
    return frame


def test_a_managers_deal_tab_reads_with_the_managers_own_token(client, installed, b24p):
    card = a_card(installed)
    b24p.deals[7] = {"ID": "7", "OPPORTUNITY": "5000000.00", "CONTACT_ID": "42"}
    operations.accrue(installed, card.number, 500_000_000, key="a", actor="t", reference="deal:7")
    b24p.deny(MANAGER, "crm.deal.get", 7)
    page = open_tab(client, "deal", 7, auth=MANAGER)
    body = text(page)
    # Neither the phone nor the balance (150 000, however spaced); "150" alone can occur
    # inside the page's random tokens.
    assert page.status_code == 403 and "79161234567" not in body
    assert not re.search(r"150[\s\u00a0]?000", body)
    assert b24p.auth_seen == MANAGER  # the deal was asked with the manager's token
    # Where Bitrix24 lets them read the deal, they see it.
    b24p.denied.clear()
    assert "79161234567" in text(open_tab(client, "deal", 7, auth=MANAGER))


def test_the_deal_debit_caps_by_the_deals_amount_not_the_forms(client, installed, b24p):
    card = a_card(installed)
    rules_mod.save(installed, {"max_debit_share_percent": "10"}, actor="t")
    b24p.deals[9] = {"ID": "9", "OPPORTUNITY": "1000.00", "CONTACT_ID": "42"}
    operations.adjust(installed, card.number, 100_000, key="j", actor="t", reason="старт")
    page = open_tab(client, "deal", 9)
    frame = tab_frame(client, page)
    key = re.search(r'id="debit-form".*?name="key" value="([^"]+)"', text(page), re.S)[1]
    form = {"key": key, "card": card.number, "amount": "500",
            "order_amount": "5000000.00", "confirmed": "1"}  # a forged order amount
    response = frame.post("/b24/placements/deal/9/debit", form)
    assert response.status_code == 422 and Entry.select().where(Entry.kind == "debit").count() == 0
    form.update(amount="100")  # 10 % of the deal's real 1 000
    assert moved(frame.post("/b24/placements/deal/9/debit", form))
    assert Entry.get(Entry.kind == "debit").amount_kop == -10_000


def test_a_new_card_reads_the_contact_with_the_viewers_token(client, installed, b24p):
    allow(installed, adjust=True)
    b24p.add_contact(42)
    b24p.deny(MANAGER, "crm.contact.get", 42)
    frame = Frame(client)
    frame.login(MANAGER)
    page = frame.get("/b24/app/clients/new", contact_id="42")
    assert "Контакт не найден" in text(page) and b24p.auth_seen == MANAGER


def test_no_page_puts_the_token_in_a_url(client, installed, b24p):
    card = a_card(installed)
    b24p.add_contact(42)
    b24p.deals[7] = {"ID": "7", "OPPORTUNITY": "100.00", "CONTACT_ID": "42"}
    frame = Frame(client)
    pages = [frame.login(ADMIN)]
    for path in ("/b24/app/clients", f"/b24/app/clients/{card.number}", "/b24/app/numbers",
                 "/b24/app/notifications", "/b24/app/notifications/log", "/b24/app/health",
                 "/b24/app/clients/new", "/b24/app/data"):
        pages.append(frame.get(path))
    pages += [open_tab(client, "contact", 42), open_tab(client, "deal", 7)]
    for page in pages:
        assert page.status_code == 200
        urls = re.findall(r'(?:href|action|formaction|data-preview)="([^"]*)"', text(page))
        assert urls and not [u for u in urls if re.search(r"[?&](t|csrf)=", u)], urls


def test_a_token_copied_from_a_log_opens_nothing(frame_user, installed):
    frame_user.login(ADMIN)
    leaked = frame_user.token
    # As it would stand in an access log or a Referer: in the query string.
    assert frame_user.client.get("/b24/app/clients", query_string={"t": leaked}).status_code == 401
    assert frame_user.client.post("/b24/app/clients?_get=1&t=" + leaked).status_code == 401
    # Even the token itself, without the CSRF value no URL ever shows, reads and writes nothing.
    assert frame_user.get("/b24/app/clients", csrf=False).status_code == 403
    assert frame_user.post("/b24/app/rules/access", {"view_cards": "on"},
                           csrf=False).status_code == 403
    assert frame_user.get("/b24/app/clients").status_code == 200  # the pair still works


def test_a_viewer_token_lives_minutes(app):
    from pages import frame

    assert frame.TOKEN_MAX_AGE_S <= 15 * 60


def test_a_forged_frame_costs_the_portal_nothing(frame_user, b24p):
    assert frame_user.open("forged-token").status_code == 401
    assert b24p.requests == 0 and b24p.oauth_requests  # only the OAuth server was asked


def test_the_viewer_token_does_not_reveal_the_auth_id(frame_user):
    frame_user.login(ADMIN)
    import base64

    payload = frame_user.token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert ADMIN.encode() not in decoded


def test_the_installers_frame_heals_dead_stored_tokens(frame_user, installed):
    Portal.update(refresh_token="dead").execute()
    frame_user.login(ADMIN)  # user 1, who installed the app
    assert Portal.get_by_id(installed.id).refresh_token == "user-refresh-secret"
    Portal.update(refresh_token="dead", token_expires_at=None).execute()
    frame_user.login(MANAGER)  # someone else's tokens never replace the app's
    assert Portal.get_by_id(installed.id).refresh_token == "dead"


@pytest.mark.parametrize("path, status", [("/b24/app", 401), ("/b24/app/clients/abc", 404)])
def test_an_error_page_says_it_once_and_as_an_error(frame_user, path, status):
    frame_user.login(ADMIN)
    page = frame_user.client.get(path) if status == 401 else frame_user.get(path)
    body = text(page)
    assert page.status_code == status
    assert 'class="lp-alert lp-alert--error' in body and "lp-alert--ok" not in body
    message = re.search(r"<p>([^<]+)</p>", body)[1]
    assert body.count(message) == 1
