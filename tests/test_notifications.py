"""Notifications: settings, automatic notices after movements, UniSender delivery with
its failures, chat notices, and no message twice across retries and crashes."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import responses
from b24fake import post_form, workflow_form

from api.clock import utcnow
from api.ledger import cards
from api.models import Notification, Outbox

GO_URL = "https://go1.unisender.ru/ru/transactional/api/v1/email/send.json"
SMS_URL = "https://api.unisender.com/ru/api/sendSms"
GO_KEY, SMS_KEY = "go-secret-key-0001", "classic-secret-key-0002"
NUMBER = "79161234567"


@pytest.fixture
def configured(api, installed):
    """The API portal is the installed one, with UniSender set up."""
    from api.auth import create_key

    api.key = create_key(installed, "tests")
    response = api.put("/api/v1/settings/notifications", json={
        "go_api_key": GO_KEY, "unisender_api_key": SMS_KEY, "sender_email": "club@example.ru",
        "sms_sender": "Club"})
    assert response.status_code == 200, response.get_json()
    return api


def card_with(api, email="anna@example.ru", manager=7):
    return api.new_card(email=email, manager_id=manager, contact_id=42)


def go_ok(b24, job="job-1"):
    b24.rsps.post(GO_URL, json={"status": "success", "job_id": job, "emails": ["anna@example.ru"],
                                "failed_emails": {}})


def sms_ok(b24, sms_id="sms-1"):
    b24.rsps.post(SMS_URL, json={"result": {"currency": "RUB", "price": "1.5", "sms_id": sms_id}})


def tick(app, now=None):
    return app.extensions["worker"].tick(now=now)


def by_template(name):
    return Notification.get(Notification.template == name)


def test_settings_show_keys_masked_and_never_log_them(configured, caplog):
    caplog.set_level(logging.DEBUG)
    body = configured.get("/api/v1/settings/notifications").get_json()
    assert body["go_api_key"] == "••••0001" and body["unisender_api_key"] == "••••0002"
    again = configured.put("/api/v1/settings/notifications",
                           json={"go_api_key": "••••0001", "go_host": "go2"})
    assert again.get_json()["go_api_key"] == "••••0001" and again.get_json()["go_host"] == "go2"
    from notifications import settings
    from api.models import Portal

    assert settings.load(Portal.get(Portal.member_id != "portal-a"))["go_api_key"] == GO_KEY
    assert GO_KEY not in caplog.text and SMS_KEY not in caplog.text
    assert GO_KEY not in again.get_data(as_text=True)


@pytest.mark.parametrize("sender", ["Shop", "Club24", "My-Shop.ru", "ABC", "ElevenChars"])
def test_an_sms_sender_of_3_to_11_latin_letters_or_digits_is_taken(configured, sender):
    response = configured.put("/api/v1/settings/notifications", json={"sms_sender": sender})
    assert response.status_code == 200 and response.get_json()["sms_sender"] == sender


@pytest.mark.parametrize("sender", ["AB", "TwelveCharsX", "Магазин", "Shop!", "My Shop", "-Shop",
                                    "Shop.", "12345", ""])
def test_other_sms_senders_are_refused_naming_the_field(configured, sender):
    response = configured.put("/api/v1/settings/notifications", json={"sms_sender": sender})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "sms_sender" in error["fields"] and "латинских" in str(error["fields"]["sms_sender"])


def test_settings_validation_names_the_field(configured):
    for body, field in [({"go_host": "go9"}, "go_host"), ({"sender_email": "nope"}, "sender_email"),
                        ({"notices": {"accrual_sms": "yes"}}, "notices.accrual_sms.value"),
                        ({"templates": {"accrual_sms": {"body": "{{ balanse }}"}}},
                         "templates.accrual_sms.body"),
                        ({"surprise": 1}, "surprise")]:
        response = configured.put("/api/v1/settings/notifications", json=body)
        assert response.status_code == 422, body
        assert field in response.get_json()["error"]["fields"], response.get_json()


def test_an_accrual_notifies_client_and_manager_once(app, configured, b24):
    b24.add_contact(42)
    card_with(configured)
    go_ok(b24)
    sms_ok(b24)
    for _ in range(2):  # a retried request with the same key sends nothing new
        configured.op(NUMBER, "accruals", {"amount": "10000", "reference": "deal-1"}, idem="k1")
    tick(app)
    sms, email, chat = by_template("accrual_sms"), by_template("accrual_email"), \
        by_template("accrual_manager")
    assert (sms.status, sms.provider_message_id, sms.recipient) == ("sent", "sms-1", NUMBER)
    assert (email.status, email.provider_message_id) == ("sent", "job-1")
    assert "300" in sms.body and chat.status == "sent" and chat.recipient == "7"
    assert Notification.select().count() == 3
    [notify] = b24.sent("im.notify.system.add")
    assert notify["USER_ID"] == "7" and notify["TAG"] == f"loyalty:n{chat.id}"
    # The contact's loyalty fields rode in the same batch as the chat notice.
    assert b24.contacts[42]["UF_CRM_LOYALTY_BAL"] == "300.00"
    assert Outbox.get().status == "sent"
    listed = configured.get(f"/api/v1/cards/{NUMBER}/notifications").get_json()["items"]
    assert {n["template"] for n in listed} == {"accrual_sms", "accrual_email", "accrual_manager"}
    sent = [c.request for c in b24.rsps.calls if c.request.url == GO_URL]
    assert sent[0].headers["X-API-KEY"] == GO_KEY and b'"idempotence_key"' in sent[0].body


def test_client_without_email_makes_the_manager_ask_for_it(app, configured, b24):
    card_with(configured, email=None)
    sms_ok(b24)
    configured.op(NUMBER, "accruals", {"amount": "10000"})
    tick(app)
    assert by_template("missing_email_manager").status == "sent"
    assert not Notification.select().where(Notification.template == "accrual_email").exists()


@pytest.mark.parametrize("reason", ["unsubscribed", "permanent_unavailable"])
def test_failed_emails_on_success_is_a_failure(app, configured, b24, reason):
    card_with(configured)
    sms_ok(b24)
    b24.rsps.post(GO_URL, json={"status": "success", "job_id": "j", "emails": [],
                                "failed_emails": {"anna@example.ru": reason}})
    configured.op(NUMBER, "accruals", {"amount": "10000"})
    tick(app)
    email = by_template("accrual_email")
    assert email.status == "failed" and reason in email.error
    tick(app, now=utcnow() + timedelta(days=1))
    assert by_template("accrual_email").attempts == 1


def test_permanent_sms_error_is_recorded_and_not_retried(app, configured, b24):
    card_with(configured, email=None)
    b24.rsps.post(SMS_URL, json={"error": "Invalid API key", "code": "invalid_api_key"})
    configured.op(NUMBER, "accruals", {"amount": "10000"})
    tick(app)
    tick(app, now=utcnow() + timedelta(days=1))
    sms = by_template("accrual_sms")
    assert sms.status == "failed" and "invalid_api_key" in sms.error and sms.attempts == 1
    assert SMS_KEY not in sms.error


def test_transient_error_is_retried_and_later_succeeds(app, configured, b24):
    card_with(configured, email=None)
    b24.rsps.post(SMS_URL, json={"error": "Try later", "code": "retry_later"})
    configured.op(NUMBER, "accruals", {"amount": "10000"})
    tick(app)
    assert by_template("accrual_sms").status == "pending"
    b24.rsps.replace(responses.POST, SMS_URL, json={"result": {"sms_id": "sms-9"}})
    tick(app, now=utcnow() + timedelta(hours=1))
    sms = by_template("accrual_sms")
    assert (sms.status, sms.provider_message_id, sms.attempts) == ("sent", "sms-9", 2)


def test_template_error_is_recorded_naming_the_placeholder(app, configured, b24):
    from notifications import settings
    from api.models import Portal

    portal = Portal.get(Portal.member_id != "portal-a")
    settings.save(portal, {"notices": {"accrual_email": False}}, actor="t")
    # A template saved before a placeholder was renamed: checked at send time too.
    row = settings.load(portal)
    row["templates"]["accrual_sms"] = {"body": "Баланс {{ balanse }}"}
    from api.models import NotificationSettings
    import json

    NotificationSettings.update(data=json.dumps(row)).execute()
    card_with(configured)
    configured.op(NUMBER, "accruals", {"amount": "10000"})
    sms = by_template("accrual_sms")
    assert sms.status == "failed" and "balanse" in sms.error


def test_crash_mid_send_never_sends_an_sms_twice(app, configured, b24):
    card_with(configured)
    configured.op(NUMBER, "accruals", {"amount": "10000"})
    now = utcnow()
    Notification.update(status="sending", claimed_until=now - timedelta(seconds=1),
                        attempts=1).execute()  # a worker died during the HTTP calls
    go_ok(b24)
    tick(app, now=now)
    assert by_template("accrual_sms").status == "unknown"
    assert by_template("accrual_email").status == "sent"  # Go drops a repeat by idempotence_key
    assert not [c for c in b24.rsps.calls if c.request.url.startswith(SMS_URL)]


def test_missing_settings_fail_clearly(app, api, b24, installed):
    from api.auth import create_key

    api.key = create_key(installed)
    api.new_card(email="anna@example.ru")
    api.op(NUMBER, "accruals", {"amount": "10000"})
    tick(app)
    assert "ключ UniSender" in by_template("accrual_sms").error


def test_notify_manager_activity_returns_the_message_id(app, client, b24, installed):
    b24.add_contact(42)
    post_form(client, "/b24/activities/loyalty_notify_manager",
              workflow_form("loyalty_notify_manager", properties={"Message": "Позвоните {{ first_name }}",
                                                                  "User": "user_9"}))
    tick(app)
    [notify] = b24.sent("im.notify.system.add")
    assert notify["USER_ID"] == 9 and notify["TAG"].startswith("loyalty:n")
    [reply] = b24.sent("bizproc.event.send")
    assert reply["RETURN_VALUES"]["Success"] == "Y" and reply["RETURN_VALUES"]["MessageId"] == "101"


def test_notify_manager_by_chat_message_setting(app, client, b24, installed):
    from notifications import settings

    settings.save(installed, {"chat_method": "message"}, actor="t")
    b24.add_contact(42)
    b24.m_im_message_add = lambda p: b24.ok(555)
    post_form(client, "/b24/activities/loyalty_notify_manager",
              workflow_form("loyalty_notify_manager", properties={"Message": "Привет"}))
    tick(app)
    [message] = b24.sent("im.message.add")
    assert message["DIALOG_ID"] == "7"  # the contact's responsible
    assert b24.sent("bizproc.event.send")[0]["RETURN_VALUES"]["MessageId"] == "555"


def test_unisender_send_activity_email_and_bad_sms(app, client, b24, installed):
    from notifications import settings

    settings.save(installed, {"go_api_key": GO_KEY, "sender_email": "club@example.ru",
                              "unisender_api_key": SMS_KEY, "sms_sender": "Club"}, actor="t")
    cards.create_card(installed, {"phone": NUMBER, "last_name": "Петрова", "first_name": "Анна",
                                  "client_category": "Врач", "contact_id": 42,
                                  "email": "anna@example.ru"}, actor="t")
    go_ok(b24, job="job-7")
    post_form(client, "/b24/activities/loyalty_unisender_send",
              workflow_form("loyalty_unisender_send", token="t-mail", properties={
                  "Channel": "email", "Subject": "Привет, {{ first_name }}",
                  "Body": "<p>Баланс: {{ balance }}</p>"}))
    post_form(client, "/b24/activities/loyalty_unisender_send",
              workflow_form("loyalty_unisender_send", token="t-sms", properties={
                  "Channel": "sms", "Recipient": "12", "Body": "Привет"}))
    tick(app)
    mail, sms = (r["RETURN_VALUES"] for r in b24.sent("bizproc.event.send"))
    assert (mail["Success"], mail["MessageId"]) == ("Y", "job-7")
    assert sms["Success"] == "N" and "Recipient" in sms["Error"]
    assert Notification.get(Notification.channel == "email").subject == "Привет, Анна"


def test_unisender_send_waits_for_a_transient_failure(app, client, b24, installed):
    from notifications import settings

    settings.save(installed, {"unisender_api_key": SMS_KEY, "sms_sender": "Club"}, actor="t")
    b24.rsps.post(SMS_URL, json={"error": "later", "code": "retry_later"})
    post_form(client, "/b24/activities/loyalty_unisender_send",
              workflow_form("loyalty_unisender_send", properties={
                  "Channel": "sms", "Recipient": "+7 916 123-45-67", "Body": "Привет"}))
    tick(app)
    assert b24.sent("bizproc.event.send") == []
    b24.rsps.replace(responses.POST, SMS_URL, json={"result": {"sms_id": "sms-5"}})
    tick(app, now=utcnow() + timedelta(hours=2))
    tick(app, now=utcnow() + timedelta(hours=4))
    [reply] = b24.sent("bizproc.event.send")
    assert reply["RETURN_VALUES"] == {"Success": "Y", "Error": "", "MessageId": "sms-5"}
    assert Notification.select().count() == 1 and Outbox.select().count() == 1


def test_settings_the_client_refuses_fail_the_message_clearly(app, configured, b24):
    import json

    from api.models import NotificationSettings

    row = NotificationSettings.get()
    NotificationSettings.update(data=json.dumps({**json.loads(row.data), "go_host": "go9"})).execute()
    card_with(configured)
    sms_ok(b24)
    configured.op(NUMBER, "accruals", {"amount": "10000"})
    tick(app)
    email = by_template("accrual_email")
    assert email.status == "failed" and "invalid_settings" in email.error
    assert by_template("accrual_sms").status == "sent"
