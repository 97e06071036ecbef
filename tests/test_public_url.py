"""Handlers are registered at the public https address, never at the inner one a reverse
proxy reaches us on."""
from __future__ import annotations

import pytest
from test_b24_install import FRAME, FRAME_QUERY

from activities import public_url

INNER = "http://10.0.0.5:8000"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "loyalty.public.example",
             "X-Forwarded-For": "203.0.113.7"}


@pytest.fixture
def behind_proxy(app):
    app.config["PUBLIC_URL"] = None
    return app


def registered(b24):
    """Registration calls the portal saw (the install's admin proof is not one)."""
    return [m for m, _ in b24.calls if m.startswith(("bizproc.", "event.", "placement.", "crm."))]


def install(client, **headers):
    return client.post("/b24/install" + FRAME_QUERY, data=FRAME, base_url=INNER,
                       headers=headers).get_data(as_text=True)


def test_without_a_public_url_nothing_is_registered_and_the_page_says_why(behind_proxy, b24):
    page = install(behind_proxy.test_client(), **FORWARDED)
    assert "installFinish" not in page and "PUBLIC_URL_MISSING" in page
    assert "LOYALTY_PUBLIC_URL" in page and "LOYALTY_PROXY_HOPS" in page and INNER in page
    assert registered(b24) == []


def test_a_configured_proxy_gives_the_forwarded_https_address(behind_proxy, b24):
    behind_proxy.config["PROXY_HOPS"] = "1"
    public_url.init_app(behind_proxy)  # what the factory does when LOYALTY_PROXY_HOPS is set
    page = install(behind_proxy.test_client(), **FORWARDED)
    assert "BX24.installFinish()" in page
    handler = b24.activities["loyalty_bonus_debit"]["HANDLER"]
    assert handler == "https://loyalty.public.example/b24/activities/loyalty_bonus_debit"
    assert {h for _, h in b24.events} == {"https://loyalty.public.example/b24/events"}


def test_a_proxy_that_forwards_plain_http_is_refused(behind_proxy, b24):
    behind_proxy.config["PROXY_HOPS"] = "1"
    public_url.init_app(behind_proxy)
    page = install(behind_proxy.test_client(), **{**FORWARDED, "X-Forwarded-Proto": "http"})
    assert "PUBLIC_URL_MISSING" in page and "https" in page and registered(b24) == []


def test_the_public_url_wins_over_forwarded_headers(app, b24):
    app.config["PROXY_HOPS"] = "1"
    public_url.init_app(app)
    install(app.test_client(), **FORWARDED)
    assert b24.activities["loyalty_card_info"]["HANDLER"].startswith("https://loyalty.example.com/")


def test_the_number_of_proxies_is_checked():
    with pytest.raises(ValueError, match="LOYALTY_PROXY_HOPS"):
        public_url.proxy_hops({"PROXY_HOPS": "yes"})
    assert public_url.proxy_hops({}) == 0 and public_url.proxy_hops({"PROXY_HOPS": "2"}) == 2
