"""The clients pages: search, a client's page, and the confirmed card actions."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)
from test_pages import MANAGER, allow, row_counts, moved, text
from test_pages_rules import error_beside

from api.clock import utcnow
from api.ledger import cards, operations
from api.models import Card, Entry, Notification, Outbox
from notifications.followup import notice_key

PHONE = "+7 916 123-45-67"


@pytest.fixture
def card(installed):
    made, _ = cards.create_card(installed, {
        "phone": PHONE, "last_name": "Петрова", "first_name": "Анна", "client_category": "Врач",
        "contact_id": 42, "manager_id": 7}, actor="test")
    operations.accrue(installed, made.number, 1_000_000, key="acc-1", actor="api:lk_test",
                      reference="deal-5")
    return Card.get_by_id(made.id)


def form_key(page: str) -> str:
    return re.search(r'name="key" value="([0-9a-f]+)"', page)[1]


@pytest.mark.parametrize("query", ["8 (916) 123-45-67", "79161234567", "петрова", "Анна", "1234"])
def test_search_by_phone_in_any_format_name_or_number(admin, card, query):
    page = text(admin.get("/b24/app/clients", q=query))
    assert "/b24/app/clients/79161234567" in page


def test_search_finds_nothing_politely(admin, card):
    assert "Ничего не найдено" in text(admin.get("/b24/app/clients", q="Сидоров"))


def test_client_page_shows_the_card(admin, card):
    page = text(admin.get("/b24/app/clients/79161234567"))
    assert 'id="card-number">79161234567' in page and "активна" in page
    assert 'id="card-balance" class="lp-big">300</dd>' in page
    assert "До уровня «Серебряный» осталось 40\u00a0000" in page
    assert "Ничего не сгорает" in page
    assert "api:lk_test" in page and "deal-5" in page  # history with actor and reference
    assert 'id="adjust-form"' in page and 'value="deal-5"' in page  # reversal suggestion


def test_bonuses_expiring_within_30_days_are_listed(admin, card, installed):
    from api.models import Lot

    Lot.update(expires_at=utcnow() + timedelta(days=10)).execute()
    page = text(admin.get("/b24/app/clients/79161234567"))
    assert f"300 — {(utcnow() + timedelta(days=10)):%d.%m.%Y}" in page


def test_unknown_card_is_404(admin):
    assert admin.get("/b24/app/clients/70000000000").status_code == 404
    assert admin.get("/b24/app/clients/abc").status_code == 404


def test_an_adjustment_is_confirmed_then_applied_once(admin, card, installed):
    key = form_key(text(admin.get("/b24/app/clients/79161234567")))
    form = {"amount": "-100.50", "reason": "Жалоба клиента", "key": key}
    before = row_counts()
    confirm = admin.post("/b24/app/clients/79161234567/adjust", form)
    assert confirm.status_code == 200 and "Подтвердите действие" in text(confirm)
    assert "-100,50" in text(confirm) and row_counts() == before  # nothing written yet
    first = admin.post("/b24/app/clients/79161234567/adjust", {**form, "confirmed": "1"})
    second = admin.post("/b24/app/clients/79161234567/adjust", {**form, "confirmed": "1"})
    assert moved(first) and moved(second)
    assert "m=adjusted" in moved(first) and "m=replayed" in moved(second)
    adjustments = list(Entry.select().where(Entry.kind == "adjustment"))
    assert len(adjustments) == 1
    assert (adjustments[0].amount_kop, adjustments[0].comment, adjustments[0].actor) == (
        -10_050, "Жалоба клиента", "b24:user_1 Ирина Админова")
    assert Card.get_by_id(card.id).balance_kop == 30_000 - 10_050
    # the follow-up rode in the same transaction: the contact's fields go to Bitrix24
    assert Outbox.select().where(Outbox.key == notice_key(f"page:{key}", "outbox")).count() == 1
    page = text(admin.follow(first))
    assert page.count('data-kind="adjustment"') == 1 and "Корректировка проведена" in page


@pytest.mark.parametrize("form, field, message", [
    ({"amount": "", "reason": "x"}, "amount", "Ожидается число вида 1500.50."),
    ({"amount": "1,5,0", "reason": "x"}, "amount", "Ожидается число вида 1500.50."),
    ({"amount": "0", "reason": "x"}, "amount", "Сумма должна быть больше нуля."),
    ({"amount": "10.001", "reason": "x"}, "amount", "Не больше двух знаков после запятой."),
    ({"amount": "100", "reason": "  "}, "reason", "Укажите причину корректировки."),
    ({"amount": "-5000", "reason": "x", "confirmed": "1"}, "amount",
     "Недостаточно бонусов: доступно 300.00"),
])
def test_bad_adjustments_are_marked_and_write_nothing(admin, card, form, field, message):
    before = row_counts()
    response = admin.post("/b24/app/clients/79161234567/adjust", {**form, "key": "k" * 32})
    assert response.status_code == 422
    assert error_beside(text(response), field) == message
    assert row_counts() == before


def test_a_form_without_its_operation_key_is_refused(admin, card):
    response = admin.post("/b24/app/clients/79161234567/adjust",
                          {"amount": "1", "reason": "x", "confirmed": "1"})
    assert response.status_code == 400


def test_a_deals_accrual_is_reversed(admin, card):
    form = {"reference": "deal-5", "key": "r" * 32}
    assert "Подтвердите действие" in text(admin.post("/b24/app/clients/79161234567/reverse", form))
    done = admin.post("/b24/app/clients/79161234567/reverse", {**form, "confirmed": "1"})
    assert moved(done) and "m=reversed" in moved(done)
    assert Card.get_by_id(card.id).balance_kop == 0
    again = admin.post("/b24/app/clients/79161234567/reverse",
                       {**form, "key": "s" * 32, "confirmed": "1"})
    assert again.status_code == 422
    assert error_beside(text(again), "reference") == "Операции по сделке/заказу deal-5 уже отменены"
    unknown = admin.post("/b24/app/clients/79161234567/reverse",
                         {"reference": "deal-9", "key": "u" * 32, "confirmed": "1"})
    assert "нет начислений и списаний" in error_beside(text(unknown), "reference")


def test_block_and_unblock_are_confirmed(admin, card):
    confirm = admin.post("/b24/app/clients/79161234567/status", {"status": "blocked"})
    assert "Заблокировать карту" in text(confirm) and Card.get_by_id(card.id).status == "active"
    done = admin.post("/b24/app/clients/79161234567/status",
                      {"status": "blocked", "confirmed": "1"})
    assert "m=blocked" in moved(done) and Card.get_by_id(card.id).status == "blocked"
    assert "Разблокировать карту" in text(admin.follow(done))
    admin.post("/b24/app/clients/79161234567/status", {"status": "active", "confirmed": "1"})
    assert Card.get_by_id(card.id).status == "active"
    assert admin.post("/b24/app/clients/79161234567/status",
                      {"status": "deleted", "confirmed": "1"}).status_code == 400


def test_a_card_for_a_contact_shows_what_is_missing(admin, b24p, installed):
    b24p.add_contact(43, NAME="", EMAIL=[])
    page = text(admin.get("/b24/app/clients/new", contact_id="43"))
    assert error_beside(page, "first_name") == "Не заполнено."
    assert error_beside(page, "client_category") == "Не заполнено."  # no category field set
    assert 'id="issue"' not in page
    before = row_counts()
    assert admin.post("/b24/app/clients/new", {"contact_id": "43"}).status_code == 422
    assert row_counts() == before


def test_a_card_is_issued_for_a_complete_contact(admin, b24p, installed):
    from api.ledger import rules

    rules.save(installed, {"client_category_field": "UF_CRM_CATEGORY"}, actor="test")
    b24p.add_contact(42)
    page = text(admin.get("/b24/app/clients/new", contact_id="42"))
    assert "Петрова" in page and "79161234567" in page and 'id="issue"' in page
    done = admin.post("/b24/app/clients/new", {"contact_id": "42"})
    assert moved(done) and "m=created" in moved(done)
    card = Card.get()
    assert (card.number, card.contact_id, card.client_category) == ("79161234567", 42, "Врач")
    assert Outbox.get().key == "page:card:79161234567"
    again = admin.post("/b24/app/clients/new", {"contact_id": "42"})
    assert "m=existed" in moved(again) and Card.select().count() == 1
    assert "Карта уже была у этого контакта" in text(admin.get("/b24/app/clients/new",
                                                               contact_id="42"))


def test_an_unknown_contact_is_reported(admin, b24p):
    page = admin.get("/b24/app/clients/new", contact_id="999")
    assert error_beside(text(page), "contact_id").startswith("Контакт не найден")


def test_viewers_see_cards_but_cannot_act(frame_user, card, installed):
    allow(installed, view_cards=True)
    frame_user.login(MANAGER)
    page = text(frame_user.get("/b24/app/clients/79161234567"))
    assert "79161234567" in page and "data-once" not in page  # no action form, links only
    before = row_counts()
    crafted = frame_user.post("/b24/app/clients/79161234567/adjust", {
        "amount": "1000", "reason": "себе", "key": "c" * 32, "confirmed": "1"})
    assert crafted.status_code == 403
    assert frame_user.post("/b24/app/clients/new", {"contact_id": "42"}).status_code == 403
    assert row_counts() == before


def test_managers_with_the_adjust_right_act_under_their_own_name(frame_user, card, installed):
    allow(installed, adjust=True)
    frame_user.login(MANAGER)
    response = frame_user.post("/b24/app/clients/79161234567/adjust", {
        "amount": "10", "reason": "Подарок", "key": "m" * 32, "confirmed": "1"})
    assert moved(response)
    assert Entry.get(Entry.kind == "adjustment").actor == "b24:user_7 Пётр Менеджеров"


def test_notifications_of_the_card_are_listed(admin, card, installed):
    from notifications.notices import insert

    insert(installed, card, "x1", "sms", "accrual_sms", card.number, None, "Привет", status="sent")
    assert 'id="card-notices"' in text(admin.get("/b24/app/clients/79161234567"))
    assert Notification.select().count() == 1
