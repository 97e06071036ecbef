"""The client login against an attacker who rotates addresses or keeps a token after the
door was shut (security review F3, F5). Helpers and fixtures: test_client_login."""
from __future__ import annotations

import pytest
from test_client_login import (NUMBER, OTHER, as_client, clock, login, site,  # noqa: F401
                               token_for, verify)

from api import client_login
from api.models import Card, Notification


def test_rotating_ipv6_addresses_of_one_line_share_its_login_limit(client, api, site):
    phones = [f"7916{n:07d}" for n in range(1000001, 1000001 + client_login.LOGIN_PER_IP.count_max + 5)]
    for phone in phones:
        api.new_card(phone=phone)
    answers = [login(client, site, phone, ip=f"2001:db8:1:2::{n + 1:x}").status_code
               for n, phone in enumerate(phones)]
    sent = Notification.select().where(Notification.template == "login_code_sms").count()
    assert sent == client_login.LOGIN_PER_IP.count_max and answers[-1] == 429
    # Another /64 is another line.
    assert login(client, site, phones[-1], ip="2001:db8:1:3::1").status_code == 202


def test_rotating_ipv6_addresses_of_one_line_share_its_verify_limit(client, site):
    tries = client_login.VERIFY_PER_IP.count_max + 3
    answers = [verify(client, site, "123456", phone=f"7903555{n:04d}",
                      ip=f"2001:db8:1:2:{n:x}::1").status_code for n in range(tries)]
    assert answers.count(429) == 3


def test_a_site_has_a_budget_of_logins_however_many_addresses_ask(client, site, monkeypatch):
    monkeypatch.setattr(client_login, "LOGIN_PER_SITE",
                        client_login.Limit("client_login_site", 3, 3600))
    answers = [login(client, site, f"7916555{n:04d}", ip=f"198.51.100.{n}").status_code
               for n in range(1, 6)]
    assert answers == [202, 202, 202, 429, 429]


def test_switching_the_site_off_ends_its_clients_sessions(app, client, api, site):
    token = token_for(client, app, site)
    assert as_client(client, token).status_code == 200
    assert api.put("/api/v1/client-site", json={"enabled": False}).status_code == 200
    assert as_client(client, token).status_code == 401
    assert api.put("/api/v1/client-site", json={"enabled": True}).status_code == 200
    assert as_client(client, token).status_code == 200  # it was not revoked, only shut out


def test_a_token_stops_reading_once_its_card_has_another_phone(app, client, site):
    token = token_for(client, app, site)
    Card.update(number="79169998877").where(Card.number == NUMBER).execute()
    assert as_client(client, token).status_code == 401


@pytest.mark.parametrize("ip, counted", [("2001:db8:1:2:aaaa::5", "2001:db8:1:2::/64"),
                                         ("::ffff:10.0.0.1", "10.0.0.1"),
                                         ("10.0.0.1", "10.0.0.1"), ("?", "?")])
def test_what_a_per_ip_limit_counts(ip, counted):
    assert client_login.client_net(ip) == counted
