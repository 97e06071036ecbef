"""The app's pages in a real browser, framed the way Bitrix24 frames them."""
from __future__ import annotations

import json
import re

import pytest
from conftest import FRAME_NAME
from test_pages import ADMIN, MANAGER

from api.db import connection
from api.ledger import cards, operations
from api.models import Card, Entry, Outbox, ProgramRules
from pages import permissions

pytestmark = pytest.mark.slow


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def app_frame(page):
    return page.frame_locator("#app")


def open_app(page, live, auth=ADMIN, lang="ru"):
    page.goto(live.host_url(auth, lang))
    return app_frame(page)


def new_card(portal, balance_kop=0):
    with connection():
        card, _ = cards.create_card(portal, {
            "phone": "+7 916 123-45-67", "last_name": "Петрова", "first_name": "Анна",
            "client_category": "Врач", "contact_id": 42}, actor="test")
        if balance_kop:
            operations.adjust(portal, card.number, balance_kop, key="seed", actor="test",
                              reason="Стартовый баланс")
    return card


def test_a_forged_auth_id_is_refused(page, live, shot):
    app = open_app(page, live, auth="forged-token")
    expect()(app.locator("[data-status='401']")).to_contain_text("Авторизация Битрикс24")
    expect()(app.locator("nav")).to_have_count(0)
    shot("01-forged-auth-401")
    with connection():
        assert ProgramRules.select().count() == 0 and Card.select().count() == 0


def test_an_admin_changes_a_tier_percent_and_the_next_accrual_uses_it(page, live, shot):
    app = open_app(page, live)
    expect()(app.locator("h1")).to_have_text("Правила программы")
    expect()(app.locator("html")).to_have_attribute("data-bx24", "ready")
    # BX24.fitWindow asked the host page to fit the frame to the content
    expect()(page.locator("#app")).to_have_attribute("style", re.compile(r"height: \d+px"))
    shot("02-rules")
    app.locator("#f-tiers-0-percent").fill("abc")
    app.locator("#save-rules").click()
    expect()(app.locator("[data-error-for='tiers.0.percent']")).to_have_text(
        "Ожидается число от 0 до 100.")
    shot("03-rules-error-beside-field")
    with connection():
        assert ProgramRules.select().count() == 0  # a rejected form wrote nothing
    app.locator("#f-tiers-0-percent").fill("4.5")
    app.locator("#save-rules").click()
    expect()(app.locator(".lp-alert--ok")).to_contain_text("Сохранено")
    card = new_card(live.portal)
    with connection():
        result = operations.accrue(live.portal, card.number, 100_000, key="after", actor="t").result
        assert ProgramRules.get().updated_by == "b24:user_1 Ирина Админова"
    assert (result["amount_kop"], result["percent"]) == (4_500, "4.50")


def test_a_non_admin_sees_no_edit_forms_and_a_crafted_post_gets_403(page, live, shot):
    with connection():
        permissions.save(live.portal, {"access": {"view_cards": True}}, actor="test")
    card = new_card(live.portal, 10_000)
    app = open_app(page, live, auth=MANAGER)
    expect()(app.locator("h1")).to_have_text("Клиенты")
    expect()(app.locator("nav button")).to_have_text(["Клиенты", "Показатели"])
    app.locator("#results button").first.click()
    expect()(app.locator("#card-number")).to_have_text(card.number)
    expect()(app.locator("form[data-once]")).to_have_count(0)  # links only, no action
    shot("04-viewer-client-page")
    frame = page.frame(name=FRAME_NAME)
    statuses = frame.evaluate("""async () => {
        const meta = (n) => document.querySelector(`meta[name=${n}]`).content;
        const post = (path, fields) => fetch(path, {method: "POST", body: new URLSearchParams(
            {t: meta("loyalty-token"), csrf: meta("loyalty-csrf"), ...fields})});
        return [
          (await post("/b24/app/rules", {"tiers-0-name": "Все", "tiers-0-threshold": "0",
                                         "tiers-0-percent": "99"})).status,
          (await post(location.pathname + "/adjust", {
              amount: "1000", reason: "себе", key: "crafted-key-123", confirmed: "1"})).status,
        ];
    }""")
    assert statuses == [403, 403]
    with connection():
        assert ProgramRules.select().count() == 0
        assert Entry.select().where(Entry.kind == "adjustment").count() == 1  # the seed only


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_an_adjustment_appears_once_after_a_double_click(browser, page, live, shot, javascript):
    card = new_card(live.portal, 10_000)
    if not javascript:  # the server's idempotency key alone must hold
        page = browser.new_context(java_script_enabled=False).new_page()
        page.set_default_timeout(10_000)
        page.goto(live.host_url(ADMIN))
        page.locator("#open-app").click()  # the host's own script can't post the frame form
    app = open_app(page, live) if javascript else app_frame(page)
    if not javascript:  # the page that goes on to the first page needs a click without JS
        app.locator("#continue-form button").click()
    app.locator("nav button", has_text="Клиенты").click()
    app.locator("input[name=q]").fill("8 (916) 123-45-67")
    app.locator("button[type=submit]", has_text="Найти").click()
    app.locator("#results button").first.click()
    app.locator("#f-amount").fill("150")
    app.locator("#f-reason").fill("Бонус за отзыв")
    app.locator("#adjust").click()
    expect()(app.locator(".lp-confirm")).to_contain_text("150")
    if javascript:
        shot("05-confirm-adjustment")
    app.locator("#confirm").dblclick()
    if not javascript:  # the page that goes on after an action needs a click without JS
        app.locator("#continue-form button").click()
    expect()(app.locator(".lp-alert--ok")).to_be_visible()
    expect()(app.locator("#history tr[data-kind=adjustment]")).to_have_count(2)  # seed + ours
    expect()(app.locator("#card-balance")).to_have_text("250")
    if javascript:
        shot("06-client-after-adjustment")
    with connection():
        ours = Entry.select().where((Entry.kind == "adjustment")
                                    & (Entry.comment == "Бонус за отзыв"))
        assert ours.count() == 1 and Card.get_by_id(card.id).balance_kop == 25_000
    if not javascript:
        page.context.close()


def test_a_template_preview_renders(page, live, shot):
    app = open_app(page, live)
    app.locator("nav button", has_text="Уведомления").click()
    expect()(app.locator("#settings-form")).to_be_visible()
    shot("07-notifications")
    app.locator("button[form=edit-accrual_sms]").click()
    expect()(app.locator("#template-form[data-live=on]")).to_be_visible()  # listens for input
    body = app.locator("#f-body")
    body.fill("{{ first_name }}, тест: баланс {{ balance }}")
    expect()(app.locator("#preview-text")).to_have_text("Анна, тест: баланс 1\u00a0250")
    body.fill("{{ nickname }}")
    expect()(app.locator("#preview-error")).to_have_text(
        "Неизвестная переменная шаблона: {{ nickname }}")
    shot("08-template-preview-error")
    app.locator("nav button", has_text="Уведомления").click()
    app.locator("button[form=edit-accrual_email]").click()
    expect()(app.frame_locator("#preview-html").locator("body")).to_contain_text(
        "Здравствуйте, Анна!")
    shot("09-email-template-preview")


def test_the_health_page_shows_a_failed_delivery_and_retry_delivers_it(page, live, shot):
    live.fake.add_contact(42)
    calls = {"contact_fields": ["crm.contact.update",
                                {"id": 42, "fields": {"UF_CRM_LOYALTY_TIER": "Золотой"}}]}
    with connection():
        row = Outbox.create(portal=live.portal, key="op:x", calls=json.dumps(calls),
                            status="failed", attempts=15,
                            last_error="QUERY_LIMIT_EXCEEDED: Too many requests")
    app = open_app(page, live)
    app.locator("nav button", has_text="Состояние").click()
    expect()(app.locator("#failed")).to_contain_text("QUERY_LIMIT_EXCEEDED: Too many requests")
    expect()(app.locator("#tokens")).to_have_text("работают")
    shot("10-health-failed-delivery")
    app.locator("#failed button", has_text="Повторить").click()
    expect()(app.locator(".lp-alert--ok")).to_contain_text("Доставка повторена")
    expect()(app.locator("#failed")).to_have_count(0)
    shot("11-health-after-retry")
    with connection():
        assert Outbox.get_by_id(row.id).status == "sent"
    assert live.fake.contacts[42]["UF_CRM_LOYALTY_TIER"] == "Золотой"


@pytest.mark.parametrize("bx24", ["fail"])
def test_the_pages_work_when_the_bitrix24_library_fails_to_load(page, live, shot):
    new_card(live.portal)
    app = open_app(page, live, lang="en")
    expect()(app.locator("h1")).to_have_text("Program rules")
    expect()(app.locator("html")).to_have_attribute("data-bx24", "unavailable")
    app.locator("nav button", has_text="Clients").click()
    app.locator("input[name=q]").fill("Петрова")
    app.locator("button[type=submit]", has_text="Search").click()
    expect()(app.locator("#results button")).to_have_text("79161234567")
    app.locator("#results button").click()
    app.locator("button", has_text="Block the card").click()
    app.locator("#confirm").click()
    expect()(app.locator("#card-status")).to_have_text("blocked")
    shot("12-english-without-bx24")
