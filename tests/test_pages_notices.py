"""The notifications page: keys masked and replace-only, validation beside fields,
template editing with a live preview, a test sent to oneself, and the log."""
from __future__ import annotations

import json
import re

from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)
from test_pages import row_counts, moved, text
from test_pages_rules import error_beside

from api.models import Notification, Outbox
from notifications import settings


def settings_form(**changes) -> dict:
    form = {"unisender_api_key": "", "go_api_key": "", "go_host": "go1",
            "sender_email": "shop@example.ru", "sender_name": "Магазин", "sms_sender": "Shop",
            "chat_method": "notify", "notices": ["accrual_sms", "accrual_email"]}
    form.update(changes)
    return form


def test_keys_are_replaced_only_when_typed_and_shown_masked(admin, installed):
    assert moved(admin.post("/b24/app/notifications", settings_form(
        unisender_api_key="classic-key-0001", go_api_key="go-key-0002")))
    assert moved(admin.post("/b24/app/notifications", settings_form(go_host="go2")))
    stored = settings.load(installed)
    assert stored["unisender_api_key"] == "classic-key-0001"
    assert stored["go_api_key"] == "go-key-0002"
    assert stored["go_host"] == "go2" and stored["sender_email"] == "shop@example.ru"
    assert stored["notices"]["accrual_sms"] and not stored["notices"]["debit_sms"]
    page = text(admin.get("/b24/app/notifications"))
    assert "••••0001" in page and "classic-key-0001" not in page and "go-key-0002" not in page
    assert 'type="password" value=""' in page


def test_a_settings_form_filled_before_another_admins_save_overwrites_nothing(admin, installed):
    page = text(admin.get("/b24/app/notifications"))
    version = re.search(r'name="version" value="([0-9a-f]+)"', page)[1]
    settings.save(installed, {"sender_name": "Другой админ"}, actor="b24:user_2")
    stale = admin.post("/b24/app/notifications", settings_form(version=version, go_host="go2"))
    assert stale.status_code == 409 and "другой администратор" in text(stale)
    assert settings.load(installed)["sender_name"] == "Другой админ"  # not put back
    fresh = re.search(r'name="version" value="([0-9a-f]+)"', text(stale))[1]
    assert moved(admin.post("/b24/app/notifications", settings_form(version=fresh, go_host="go2")))
    assert settings.load(installed)["go_host"] == "go2"


def test_bad_settings_are_marked_and_nothing_is_written(admin):
    before = row_counts()
    response = admin.post("/b24/app/notifications", settings_form(
        sender_email="not-an-email", sender_name="", sms_sender="TooLongSender", go_host="go9",
        go_api_key="typed-but-rejected"))
    assert response.status_code == 422
    page = text(response)
    for name in ("sender_email", "sender_name", "sms_sender", "go_host"):
        assert error_beside(page, name), name
    assert 'value="not-an-email"' in page and "typed-but-rejected" not in page
    assert row_counts() == before


def test_the_editor_shows_a_preview_on_the_sample_client(admin):
    page = text(admin.get("/b24/app/notifications/templates/accrual_email"))
    assert "Анна, вам начислены бонусы" in page  # the subject, rendered
    assert 'sandbox title' in page and "{{ first_name }}" in page  # placeholder help


def test_live_preview_renders_the_typed_template(admin):
    response = admin.post("/b24/app/notifications/templates/accrual_sms/preview",
                          {"body": "{{ first_name }}, баланс {{ balance }}"})
    assert response.get_json() == {"subject": None, "body": "Анна, баланс 1\u00a0250",
                                   "error": None, "html": False}
    bad = admin.post("/b24/app/notifications/templates/accrual_sms/preview",
                     {"body": "{{ nickname }}"}).get_json()
    assert bad["error"] == "Неизвестная переменная шаблона: {{ nickname }}"
    assert admin.post("/b24/app/notifications/templates/accrual_sms/preview",
                      {"body": "x"}, csrf=False).status_code == 403


def test_a_template_is_saved_or_marked_beside_the_body(admin, installed):
    url = "/b24/app/notifications/templates/accrual_email"
    bad = admin.post(url, {"action": "save", "subject": "Бонусы", "body": "{% for x in y %}"})
    assert bad.status_code == 422 and error_beside(text(bad), "body")
    assert settings.load(installed)["templates"] == {}
    good = admin.post(url, {"action": "save", "subject": "Бонусы, {{ first_name }}",
                            "body": "<p>Начислено {{ accrued }}</p>"})
    assert moved(good)
    assert settings.load(installed)["templates"]["accrual_email"] == {
        "subject": "Бонусы, {{ first_name }}", "body": "<p>Начислено {{ accrued }}</p>"}
    shown = admin.post(url, {"action": "preview", "subject": "S", "body": "<b>{{ tier }}</b>"})
    assert "&lt;b&gt;Серебряный&lt;/b&gt;" in text(shown)  # srcdoc of the sandboxed frame
    assert settings.load(installed)["templates"]["accrual_email"]["subject"] != "S"


def test_send_a_test_to_me_by_chat_goes_through_the_outbox(admin, installed):
    form = {"body": "Тест для {{ first_name }}", "key": "k" * 16}
    url = "/b24/app/notifications/templates/accrual_manager/test"
    assert moved(admin.post(url, form))
    assert moved(admin.post(url, form))  # a double click sends one test
    row = Notification.get()
    assert (row.channel, row.recipient, row.body, row.card) == ("chat", "1", "Тест для Анна", None)
    calls = json.loads(Outbox.get().calls)
    assert calls == {f"notice_{row.id}": ["im.notify.system.add", {
        "USER_ID": 1, "MESSAGE": "Тест для Анна", "TAG": f"loyalty:n{row.id}"}]}


def test_send_a_test_by_email_or_sms_needs_a_valid_recipient(admin):
    url = "/b24/app/notifications/templates/{}/test"
    missing = admin.post(url.format("accrual_email"), {"subject": "S", "body": "B"})
    assert missing.status_code == 422
    assert error_beside(text(missing), "recipient") == "Укажите e-mail для теста."
    bad_phone = admin.post(url.format("accrual_sms"), {"body": "B", "recipient": "12"})
    assert bad_phone.status_code == 422
    assert Notification.select().count() == 0
    sent = admin.post(url.format("accrual_sms"), {"body": "SMS {{ first_name }}",
                                                  "recipient": "8 (916) 111-22-33"})
    assert moved(sent)
    assert (Notification.get().recipient, Notification.get().status) == ("79161112233", "pending")


def test_unknown_template_is_404(admin):
    assert admin.get("/b24/app/notifications/templates/nope").status_code == 404


def test_the_log_filters_by_status_and_channel(admin, installed):
    from notifications.notices import insert

    insert(installed, None, "n1", "email", "accrual_email", "a@example.ru", "S", "B",
           status="failed", error="not_configured: UniSender не настроен")
    insert(installed, None, "n2", "sms", "accrual_sms", "79161112233", None, "B", status="sent")
    page = text(admin.get("/b24/app/notifications/log"))
    assert "a@example.ru" in page and "79161112233" in page
    failed = text(admin.get("/b24/app/notifications/log", status="failed"))
    assert "not_configured" in failed and "79161112233" not in failed
    sms = text(admin.get("/b24/app/notifications/log", channel="sms", status="bogus"))
    assert "79161112233" in sms and "a@example.ru" not in sms
