"""Attacks a security review tried that held (throttle spoofing, CORS, forged client tokens,
holds and webhooks across portals, SSRF address forms, rule percents, scopes): kept so
they keep holding."""
from __future__ import annotations

import pytest

from api import client_login
from api.auth import create_key
from api.models import Portal, WebhookEvent

from test_client_login import NUMBER, ORIGIN, OTHER, site  # noqa: F401 (site is a fixture)


@pytest.fixture
def other(client, api_actions):
    portal = Portal.create(member_id="portal-b", domain="b.bitrix24.ru", status="active")
    return api_actions(client, create_key(portal, "b"))


def test_x_forwarded_for_does_not_reset_the_ip_limit_without_a_proxy(client, api, site):
    answers = [client.post("/api/v1/client/login",
                           json={"site": site, "phone": f"7903555{i:04d}"},
                           headers={"X-Forwarded-For": f"203.0.113.{i}", "X-Real-IP": f"1.2.3.{i}"},
                           environ_base={"REMOTE_ADDR": "10.7.7.7"}).status_code
               for i in range(client_login.LOGIN_PER_IP.count_max + 1)]
    assert answers[-1] == 429 and answers[:-1] == [202] * client_login.LOGIN_PER_IP.count_max


def test_cors_never_reflects_an_unknown_origin(client, site):
    for method in ("options", "post"):
        response = getattr(client, method)("/api/v1/client/login", json={"site": site, "phone": NUMBER},
                                           headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Credentials" not in response.headers
    # Case and trailing-dot variants of the configured origin are not it.
    for origin in ("https://shop.example.ru.", "https://shop.example.ru.evil.example",
                   "http://shop.example.ru", "https://shop.example.ru:443", "null"):
        response = client.post("/api/v1/client/login", json={"site": site, "phone": OTHER},
                               headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers, origin


def test_a_client_token_for_another_salt_or_payload_is_refused(app, client, site):
    from itsdangerous import URLSafeTimedSerializer

    card = client_login.Card.get(number=NUMBER)
    for salt in ("loyalty.pages.viewer", "cookie-session", "itsdangerous"):
        forged = "ct." + URLSafeTimedSerializer("test-secret", salt=salt).dumps(
            {"p": card.portal_id, "c": card.id})
        assert client.get("/api/v1/client/card",
                          headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    # A genuine token of portal A names a card that exists only in portal B: nothing.
    token = client_login.TOKEN_PREFIX + client_login._serializer("test-secret").dumps(
        {"p": card.portal_id + 1, "c": card.id})
    assert client.get("/api/v1/client/card",
                      headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_a_client_token_is_no_api_key_and_opens_no_admin_endpoint(app, client, site):
    card = client_login.Card.get(number=NUMBER)
    token = client_login.issue_token(card, "test-secret")
    for path in ("/api/v1/webhooks", "/api/v1/client-site", "/api/v1/rules/products",
                 f"/api/v1/cards/{NUMBER}/holds"):
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_holds_of_another_portal_are_out_of_reach(api, other):
    api.new_card()
    assert api.op(NUMBER, "adjustments", {"amount": "1000", "reason": "x"}).status_code == 201
    made = api.op(NUMBER, "holds", {"amount": "600"}).get_json()
    hold_id = made["hold_id"]
    other.new_card()  # the same phone has a card in portal B too
    assert other.post(f"/api/v1/holds/{hold_id}/capture", json={}, idem="x1").status_code == 404
    assert other.post(f"/api/v1/holds/{hold_id}/release", idem="x2").status_code == 404
    assert other.get(f"/api/v1/cards/{NUMBER}/holds").get_json()["items"] == []
    # Capture more than held, or a negative or zero part: refused.
    for amount in ("600.01", "0", "-1", 1e9):
        bad = api.post(f"/api/v1/holds/{hold_id}/capture", json={"amount": amount}, idem=f"c{amount}")
        assert bad.status_code == 422, (amount, bad.get_json())
    # The same key with another body: a conflict, never the first answer for new inputs.
    assert api.post(f"/api/v1/holds/{hold_id}/capture", json={"amount": "100"},
                    idem="k").status_code == 201
    assert api.post(f"/api/v1/holds/{hold_id}/capture", json={"amount": "200"},
                    idem="k").status_code == 409
    # A key used by a debit replayed as a hold: a conflict, not the debit's answer.
    assert api.op(NUMBER, "debits", {"amount": "1"}, idem="shared").status_code == 201
    assert api.op(NUMBER, "holds", {"amount": "1"}, idem="shared").status_code == 409


def test_webhooks_of_another_portal_are_out_of_reach(app, api, other):
    app.config.update(WEBHOOK_ALLOW_HTTP=True)
    sub = api.post("/api/v1/webhooks", json={"url": "https://a.example/h",
                                             "events": ["card.created"]}).get_json()
    mine = other.post("/api/v1/webhooks", json={"url": "https://b.example/h",
                                                "events": ["card.created"]}).get_json()
    api.new_card()
    event_a = WebhookEvent.get().event_id
    assert other.client.patch(f"/api/v1/webhooks/{sub['id']}", json={"url": "https://b.example/x"},
                              headers=other.headers()).status_code == 404
    assert other.get(f"/api/v1/webhooks/{sub['id']}/attempts").status_code == 404
    assert other.post(f"/api/v1/webhooks/{sub['id']}/events/{event_a}/replay").status_code == 404
    # B's own subscription cannot be made to carry A's event.
    assert other.post(f"/api/v1/webhooks/{mine['id']}/events/{event_a}/replay").status_code == 404
    assert all("secret" not in s for s in api.get("/api/v1/webhooks").get_json()["items"])


@pytest.mark.parametrize("url", ["https://localhost./x", "https://2130706433/x",
                                 "https://0177.0.0.1/x", "https://0x7f.1/x", "https://127.1/x",
                                 "https://[::ffff:7f00:1]/x", "https://[fe80::1%25eth0]/x",
                                 "https://[fd00::1]/x", "https://100.64.0.1/x"])
def test_numeric_and_trailing_dot_forms_of_internal_hosts_are_refused(app, url):
    from api.webhooks import urls

    app.config.update(WEBHOOK_ALLOW_NETWORKS="")
    with pytest.raises(urls.UnsafeUrl):
        urls.resolve(url, app.config)


@pytest.mark.parametrize("percent", ["-1", "100.01", "1e2", "50.001", "NaN", "Infinity", True,
                                     "  ", "1,5e1"])
def test_product_rule_percents_out_of_range_are_refused(api, percent):
    for field in ("percent", "bonus_share"):
        response = api.put("/api/v1/rules/products",
                           json={"rules": [{"product_id": 1, field: percent}]})
        assert response.status_code == 422, (field, percent, response.get_json())


def test_scopes_hold_for_the_new_endpoints(client, api, portal):
    api.new_card()
    read = {"Authorization": f"Bearer {create_key(portal, 'r', scopes=('read',))}",
            "Idempotency-Key": "s1"}
    write = {"Authorization": f"Bearer {create_key(portal, 'w', scopes=('read', 'write'))}"}
    assert client.post(f"/api/v1/cards/{NUMBER}/holds", json={"amount": "1"},
                       headers=read).status_code == 403
    assert client.post("/api/v1/holds/1/capture", json={}, headers=read).status_code == 403
    for method, path in (("get", "/api/v1/webhooks"), ("post", "/api/v1/webhooks"),
                         ("get", "/api/v1/client-site"), ("put", "/api/v1/client-site"),
                         ("put", "/api/v1/rules/products"), ("get", "/api/v1/exports/cards.csv"),
                         ("get", "/api/v1/audit")):
        assert getattr(client, method)(path, json={}, headers=write).status_code == 403, path
