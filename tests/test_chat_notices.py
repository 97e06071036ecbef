"""Manager notices come from the app (im.notify.system.add), and a resent batch never
posts a chat message twice: chat messages have no TAG to absorb a second copy."""
from __future__ import annotations

from datetime import timedelta

from b24fake import post_form, workflow_form

from api.clock import utcnow
from api.models import Notification, Outbox
from notifications import settings as notice_settings
from scheduler.chat import enqueue_chat

CONTEXT = {"first_name": "Анна", "last_name": "Петрова", "phone": "79161234567"}


def tick(app, now=None):
    return app.extensions["worker"].tick(now=now)


def queue_notice(portal, key="birthday_no_card:42:2027"):
    enqueue_chat(portal, None, 7, "birthday_no_card_manager", CONTEXT, key,
                 notice_settings.load(portal))
    return Notification.get(Notification.key == key)


def later(hours=2):
    return utcnow() + timedelta(hours=hours)


def test_a_scheduled_notice_is_a_system_notification_from_the_app(app, b24, installed):
    row = queue_notice(installed)
    tick(app)
    [sent] = b24.notifications
    assert sent["kind"] == "system" and sent["USER_ID"] == 7 and sent["TAG"] == f"loyalty:n{row.id}"
    assert b24.sent("im.notify.personal.add") == []
    assert Notification.get_by_id(row.id).status == "sent"


def test_a_resent_notification_shows_once(app, b24, installed):
    queue_notice(installed)
    b24.lose_answers["im.notify.system.add"] = 1  # delivered, the answer timed out: sent again
    tick(app)
    tick(app, now=later())
    assert len(b24.sent("im.notify.system.add")) == 2 and len(b24.notifications) == 1


def test_a_chat_message_whose_answer_was_lost_is_not_sent_again(app, b24, installed):
    notice_settings.save(installed, {"chat_method": "message"}, actor="t")
    row = queue_notice(installed)
    b24.lose_answers["im.message.add"] = 1
    tick(app)
    assert Notification.get_by_id(row.id).status == "sending"
    tick(app, now=later())
    assert len(b24.messages) == 1  # not two: the first one did arrive
    row = Notification.get_by_id(row.id)
    assert row.status == "unknown" and "TAG" in row.error
    assert Outbox.get().status == "failed"  # shown on the Health page, with the reason


def test_a_chat_message_the_portal_refused_goes_again_once(app, b24, installed):
    notice_settings.save(installed, {"chat_method": "message"}, actor="t")
    row = queue_notice(installed)
    b24.failures["im.message.add"] = [(503, {"error": "QUERY_LIMIT_EXCEEDED",
                                             "error_description": "Too many requests"})]
    tick(app)
    assert Notification.get_by_id(row.id).status == "pending" and b24.messages == []
    tick(app, now=later())
    tick(app, now=later(4))
    assert len(b24.messages) == 1 and Notification.get_by_id(row.id).status == "sent"


def test_the_notify_activity_does_not_repeat_an_unanswered_chat_message(app, client, b24,
                                                                        installed):
    notice_settings.save(installed, {"chat_method": "message"}, actor="t")
    b24.add_contact(42)
    b24.lose_answers["im.message.add"] = 1
    post_form(client, "/b24/activities/loyalty_notify_manager",
              workflow_form("loyalty_notify_manager", properties={"Message": "Привет",
                                                                  "User": "user_9"}))
    tick(app)
    tick(app, now=later())
    tick(app, now=later(4))
    assert len(b24.messages) == 1
    [reply] = b24.sent("bizproc.event.send")
    assert reply["RETURN_VALUES"]["Success"] == "N" and "TAG" in reply["RETURN_VALUES"]["Error"]

