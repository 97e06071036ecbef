"""The health page: the connection, the registrations check with "repair", and the
delivery queues with "retry"."""
from __future__ import annotations

import json
from datetime import timedelta

from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)
from test_pages import USERS, moved, text

from api.clock import utcnow
from api.models import Notification, Outbox, Portal
from notifications.notices import insert


def failed_delivery(portal, error="QUERY_LIMIT_EXCEEDED: Too many requests") -> Outbox:
    calls = {"contact_fields": ["crm.contact.update",
                                {"id": 42, "fields": {"UF_CRM_LOYALTY_CARD": "7916"}}]}
    return Outbox.create(portal=portal, key="op:page:abc", calls=json.dumps(calls),
                         status="failed", attempts=15, last_error=error,
                         created_at=utcnow() - timedelta(hours=2))


def test_a_fresh_portal_shows_every_registration_missing(admin):
    page = text(admin.get("/b24/app/health"))
    assert 'id="tokens">работают' in page
    assert "loyalty_card_create" in page and "ONCRMCONTACTUPDATE" in page
    assert "UF_CRM_LOYALTY_CARD" in page and 'data-ok="no"' in page


def test_repair_registers_what_is_missing(admin, b24p):
    response = admin.post("/b24/app/health/repair")
    assert moved(response) and "m=repaired" in moved(response)
    assert len(b24p.activities) == 9 and len(b24p.events) == 3 and len(b24p.fields) == 3
    page = text(admin.follow(response))
    assert "Регистрации восстановлены" in page and "18 added" in page
    assert 'data-ok="no"' not in page


def test_a_refused_repair_shows_what_and_the_portals_text(admin, b24p):
    b24p.failures["placement.bind"] = [(400, {"error": "ERROR_PLACEMENT_MAX_COUNT",
                                              "error_description": "Max count exceeded"})]
    response = admin.post("/b24/app/health/repair")
    assert moved(response) and "m=repair_failed" in moved(response)
    page = text(admin.follow(response))
    assert "Вкладка CRM_CONTACT_DETAIL_TAB: ERROR_PLACEMENT_MAX_COUNT Max count exceeded" in page


def test_the_outbox_backlog_and_a_failed_delivery_are_shown_and_retried(admin, b24p, installed):
    b24p.add_contact(42)
    row = failed_delivery(installed)
    Outbox.create(portal=installed, key="op:later", calls="{}", status="pending")
    page = text(admin.get("/b24/app/health"))
    assert 'id="backlog">1<' in page and "QUERY_LIMIT_EXCEEDED: Too many requests" in page
    response = admin.post(f"/b24/app/health/outbox/{row.id}/retry")
    assert moved(response) and "m=retried" in moved(response)
    assert Outbox.get_by_id(row.id).status == "sent"
    assert b24p.contacts[42]["UF_CRM_LOYALTY_CARD"] == "7916"
    page = text(admin.follow(response))
    assert "Доставка повторена" in page and "QUERY_LIMIT_EXCEEDED" not in page


def test_a_retry_that_fails_again_says_so(admin, b24p, installed):
    row = failed_delivery(installed)  # contact 42 does not exist on the portal
    response = admin.post(f"/b24/app/health/outbox/{row.id}/retry")
    assert "m=retry_failed" in moved(response)
    assert "Contact is not found" in Outbox.get_by_id(row.id).last_error


def test_another_portals_delivery_is_not_found(admin, installed):
    other = Portal.create(member_id="other", status="active")
    row = failed_delivery(other)
    assert admin.post(f"/b24/app/health/outbox/{row.id}/retry").status_code == 404
    assert Outbox.get_by_id(row.id).status == "failed"


def test_failed_emails_are_listed_with_a_retry(admin, installed):
    note = insert(installed, None, "n1", "email", "accrual_email", "a@example.ru", "S", "B",
                  status="failed", error="not_configured: UniSender не настроен")
    assert "not_configured: UniSender не настроен" in text(admin.get("/b24/app/health"))
    response = admin.post(f"/b24/app/health/notifications/{note.id}/retry")
    assert "m=retry_failed" in moved(response)  # still not configured: it says why
    assert Notification.get_by_id(note.id).attempts == 1


def test_broken_tokens_are_reported(admin, b24p, installed):
    b24p.tokens = set(USERS)  # the app's token is gone and the refresh token is wrong
    Portal.update(access_token="dead", refresh_token="stale").where(
        Portal.id == installed.id).execute()
    page = text(admin.get("/b24/app/health"))
    assert "не работают" in page and "Проверка не удалась" in page
