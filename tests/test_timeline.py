"""Every movement on the contact's timeline: one entry per movement across retries and
restarts, a comment where the log entry is refused, a tier change of its own, a switch."""
from __future__ import annotations

from datetime import timedelta

from b24fake import post_form, workflow_form

from api.clock import utcnow
from api.ledger import cards, operations
from api.models import Outbox
from notifications import settings


def tick(app, now=None):
    return app.extensions["worker"].tick(now=now)


def setup_card(installed, b24):
    b24.add_contact(42)
    b24.m_crm_timeline_logmessage_add = lambda p: b24.ok({"logMessage": {"id": 1}})
    b24.m_crm_timeline_comment_add = lambda p: b24.ok(999)
    card, _ = cards.create_card(installed, {"phone": "9161234567", "last_name": "Петрова",
                                            "first_name": "Анна", "client_category": "Врач",
                                            "contact_id": 42}, actor="t")
    return card


def test_an_accrual_by_activity_logs_once_with_amount_and_balance(app, client, b24, installed):
    setup_card(installed, b24)
    b24.deals[7] = {"ID": "7", "OPPORTUNITY": "60000.00", "CONTACT_ID": "42"}
    b24.failures["bizproc.event.send"] = [
        (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})]
    post_form(client, "/b24/activities/loyalty_bonus_accrue",
              workflow_form("loyalty_bonus_accrue", document="DEAL_7"))
    tick(app)  # the batch fails whole (503): nothing delivered
    tick(app, now=utcnow() + timedelta(minutes=5))
    tick(app, now=utcnow() + timedelta(minutes=10))
    logs = b24.sent("crm.timeline.logmessage.add")
    assert len(logs) == 2  # the movement, and the tier change it caused
    first = logs[0]["fields"]
    assert first["entityTypeId"] == "3" and first["entityId"] == "42"
    assert first["title"] == "Начислены бонусы" and "1\u00a0800" in first["text"]
    assert "deal:7" in first["text"]
    assert "Базовый → Серебряный" in logs[1]["fields"]["text"]


def test_a_refused_log_entry_becomes_a_comment(app, api, b24, installed):
    from api.auth import create_key

    setup_card(installed, b24)
    b24.m_crm_timeline_logmessage_add = lambda p: (403, {"error": "ACCESS_DENIED",
                                                          "error_description": "Access denied"})
    api.key = create_key(installed)
    api.op("79161234567", "adjustments", {"amount": "50", "reason": "Подарок"})
    tick(app)
    tick(app)
    [comment] = b24.sent("crm.timeline.comment.add")
    assert comment["fields"]["ENTITY_TYPE"] == "contact" and "Подарок" in comment["fields"]["COMMENT"]
    assert Outbox.get().status == "sent"


def test_expiry_and_birthday_are_logged_and_the_switch_turns_it_off(app, b24, installed):
    card = setup_card(installed, b24)
    t0 = utcnow() - timedelta(days=400)
    operations.accrue(installed, card.number, 1_000_000, key="a", actor="t", now=t0)
    from scheduler import expiry

    expiry.run(installed, now=utcnow())
    tick(app)
    assert [c["fields"]["title"] for c in b24.sent("crm.timeline.logmessage.add")] == \
        ["Сгорели бонусы"]
    settings.save(installed, {"timeline": False}, actor="t")
    operations.adjust(installed, card.number, 100, key="j", actor="t", reason="r")
    from notifications.followup import follow_up

    assert "timeline" not in follow_up(installed, card, "adjustment", {"amount_kop": 100}, "j")
