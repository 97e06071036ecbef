"""The Health page shows what stopped a portal's background work, and dead letters."""
from __future__ import annotations

from datetime import timedelta

from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)
from test_pages import moved, text

from api.clock import utcnow
from api.models import ActivityRun
from background import lanes


def test_an_overload_block_is_an_alert_with_a_resume_button(admin, installed):
    now = utcnow()
    lanes.pause(installed.id, lanes.B24, now + timedelta(hours=1), "OVERLOAD_LIMIT",
                "REST API is blocked due to overload", now)
    page = text(admin.get("/b24/app/health"))
    assert 'data-alert="OVERLOAD_LIMIT"' in page and "REST API is blocked due to overload" in page
    assert "техническая поддержка Битрикс24" in page and 'id="resume-b24"' in page
    response = admin.post("/b24/app/health/lanes/b24/resume")
    assert moved(response) and "m=resumed" in moved(response)
    assert lanes.alerts(installed.id) == []
    assert 'id="alerts"' not in text(admin.follow(response))


def test_resuming_what_is_not_stopped_is_not_found(admin, installed):
    assert admin.post("/b24/app/health/lanes/b24/resume").status_code == 404
    assert admin.post("/b24/app/health/lanes/nope/resume").status_code == 404


def test_a_dead_letter_run_is_listed(admin, installed):
    ActivityRun.create(portal=installed, token_hash="h", event_token="t", code="loyalty_card_info",
                       document_id="[]", properties="{}", status="failed", attempts=8,
                       last_error="внутренняя ошибка: RuntimeError")
    page = text(admin.get("/b24/app/health"))
    assert 'id="dead-runs"' in page and "внутренняя ошибка: RuntimeError" in page
