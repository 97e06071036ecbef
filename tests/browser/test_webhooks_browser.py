"""The webhooks page in a real browser: a private URL refused beside its field, a
subscription created with its secret shown once, paused, resumed, then deleted."""
from __future__ import annotations

import pytest
from test_pages_browser import expect, open_app

from api.db import connection
from api.models import WebhookSubscription

pytestmark = pytest.mark.slow


def test_an_admin_manages_a_subscription(page, live, shot):
    app = open_app(page, live)
    app.locator("nav button", has_text="Вебхуки").click()
    expect()(app.locator("h1")).to_have_text("Вебхуки")
    app.locator("#f-url").fill("https://10.1.2.3/hook")
    app.locator("input[name=events][value='bonus.accrued']").last.check()
    app.locator("#create").click()
    expect()(app.locator("[data-error-for=url]")).to_contain_text("адрес закрытой или локальной сети")
    shot("20-webhooks-private-url-refused")
    app.locator("#f-url").fill("https://crm.example.ru/hooks/loyalty")
    app.locator("#create").click()
    secret = app.locator("#secret")
    expect()(secret).to_contain_text("whsec_")
    shot("21-webhooks-created-secret-once")
    with connection():
        sub = WebhookSubscription.get()
        assert sub.secret == secret.inner_text()
    app.locator(f"#pause-{sub.id}").click()
    expect()(app.locator(".lp-alert--ok")).to_contain_text("Подписка приостановлена")
    expect()(app.locator(f"#sub-{sub.id}")).to_have_attribute("data-status", "paused")
    expect()(app.locator("#secret")).to_have_count(0)  # shown once, never again
    app.locator(f"#resume-{sub.id}").click()
    expect()(app.locator(f"#sub-{sub.id}")).to_have_attribute("data-status", "active")
    app.locator(f"#log-{sub.id}").click()
    expect()(app.locator("#log")).to_contain_text("Попыток доставки пока не было.")
    app.locator("#back").click()
    app.locator(f"#delete-{sub.id}").click()
    app.locator("#confirm").click()
    expect()(app.locator(".lp-alert--ok")).to_contain_text("Подписка удалена")
    with connection():
        assert WebhookSubscription.select().count() == 0
