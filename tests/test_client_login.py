"""The client's own login: an SMS code through the outbox, a token that reads one card,
brute force and SMS bombing stopped, no enumeration, CORS for the site's origins only."""
from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import responses

from api import client_login
from api.auth import create_key
from api.clock import utcnow
from api.models import LoginCode, Notification, Portal
from notifications import delivery

SMS_URL = "https://api.unisender.com/ru/api/sendSms"
NUMBER, OTHER = "79161234567", "79161112233"
ORIGIN = "https://shop.example.ru"


@pytest.fixture
def site(api):
    api.put("/api/v1/settings/notifications",
            json={"unisender_api_key": "classic-key-0002", "sms_sender": "Club",
                  "notices": {"accrual_sms": False}})
    response = api.put("/api/v1/client-site", json={"origins": [ORIGIN + "/"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["origins"] == [ORIGIN]
    api.new_card()
    api.new_card(phone=OTHER, first_name="Иван")
    return response.get_json()["site_id"]


class Clock:
    def __init__(self, monkeypatch):
        self.now = utcnow()
        monkeypatch.setattr(client_login, "utcnow", lambda: self.now)

    def pass_s(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def login(client, site, phone=NUMBER, ip="10.0.0.1", **headers):
    return client.post("/api/v1/client/login", json={"site": site, "phone": phone},
                       environ_base={"REMOTE_ADDR": ip}, headers=headers)


def verify(client, site, code, phone=NUMBER, ip="10.0.0.1"):
    return client.post("/api/v1/client/verify", json={"site": site, "phone": phone, "code": code},
                       environ_base={"REMOTE_ADDR": ip})


def deliver_sms(app) -> str:
    """Run the outbox delivery of notifications; return the code the SMS carried."""
    with responses.RequestsMock() as rsps:
        rsps.post(SMS_URL, json={"result": {"currency": "RUB", "price": "1", "sms_id": "s1"}})
        assert delivery.deliver_due(app.config) == 1
        text = parse_qs(rsps.calls[0].request.body)["text"][0]
    return re.search(r"\b(\d{6})\b", text).group(1)


def token_for(client, app, site, phone=NUMBER):
    assert login(client, site, phone).status_code == 202
    response = verify(client, site, deliver_sms(app), phone)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["token"]


def as_client(client, token, path="/api/v1/client/card"):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_login_by_sms_code_then_the_card_and_its_history(app, client, api, site):
    api.op(NUMBER, "accruals", {"amount": "1000", "reference": "deal-1"})
    with responses.RequestsMock():  # any HTTP call made inside the request would fail here
        sent = login(client, site)
    assert sent.status_code == 202
    assert sent.get_json() == {"sent": True, "expires_in": 300, "resend_after": 60}
    row = Notification.get(Notification.template == "login_code_sms")
    assert row.status == "pending" and row.recipient == NUMBER
    code = deliver_sms(app)
    stored = LoginCode.get()
    assert code not in (stored.code_hash, stored.phone) and len(stored.code_hash) == 64
    assert code not in Notification.get_by_id(row.id).body  # blanked once sent
    answer = verify(client, site, code)
    assert answer.status_code == 200 and answer.get_json()["token_type"] == "Bearer"
    token = answer.get_json()["token"]
    card = as_client(client, token).get_json()
    assert card["number"] == NUMBER and card["balance"] == "30.00" and card["tier"] == "Базовый"
    assert card["next_tier"]["remaining"] == "49000.00" and card["expiring"] == []
    assert "contact_id" not in card and "manager_id" not in card
    items = as_client(client, token, "/api/v1/client/card/transactions").get_json()["items"]
    assert [i["kind"] for i in items] == ["accrual"] and "actor" not in items[0]


def test_the_token_reads_only_its_own_card(app, client, api, site):
    token = token_for(client, app, site)
    assert as_client(client, token, f"/api/v1/cards/{OTHER}").status_code == 401
    assert as_client(client, token, "/api/v1/cards").status_code == 401
    assert as_client(client, token, "/api/v1/rules").status_code == 401
    assert as_client(client, token, f"/api/v1/client/card?number={OTHER}").get_json()[
        "number"] == NUMBER
    # An API key is not a client token, and a forged or altered token reads nothing.
    assert as_client(client, api.key).status_code == 401
    assert as_client(client, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")).status_code == 401
    forged = client_login.issue_token(client_login.Card.get(number=OTHER), "another-secret")
    assert as_client(client, forged).status_code == 401


def test_the_token_expires(app, client, site, monkeypatch):
    token = token_for(client, app, site)
    monkeypatch.setattr(client_login, "TOKEN_TTL_S", -1)
    response = as_client(client, token)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "token_expired"


def test_a_phone_without_a_card_gets_the_same_answer(app, client, site):
    with_card, without = login(client, site), login(client, site, phone="79035550000")
    assert (with_card.status_code, with_card.get_json()) == (without.status_code, without.get_json())
    assert Notification.select().where(Notification.template == "login_code_sms").count() == 1
    assert LoginCode.select().count() == 2  # the same write either way
    wrong = verify(client, site, "000000", phone="79035550000")
    assert wrong.status_code == 401 and wrong.get_json()["error"]["code"] == "invalid_code"
    # The same limits too: a second SMS within a minute is refused for both.
    assert login(client, site).status_code == login(client, site, phone="79035550000").status_code == 429


def test_a_code_is_single_use_and_only_the_newest_counts(app, client, site, clock):
    login(client, site)
    first = deliver_sms(app)
    clock.pass_s(61)
    login(client, site)
    second = deliver_sms(app)
    if first != second:
        assert verify(client, site, first).status_code == 401
    assert verify(client, site, second).status_code == 200
    assert verify(client, site, second).status_code == 401


def test_a_code_expires_in_minutes(app, client, site, clock):
    login(client, site)
    code = deliver_sms(app)
    clock.pass_s(client_login.CODE_TTL_S + 1)
    assert verify(client, site, code).status_code == 401


def test_guessing_kills_the_code_after_five_tries(app, client, site):
    login(client, site)
    code = deliver_sms(app)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(client_login.CODE_ATTEMPTS_MAX):
        assert verify(client, site, wrong).status_code == 401
    assert verify(client, site, code).status_code == 401  # right, but too late


def test_verify_is_limited_per_phone_and_per_ip(app, client, site, clock):
    login(client, site)
    for i in range(client_login.VERIFY_PER_PHONE.count_max):
        verify(client, site, "000000", ip=f"10.0.1.{i}")
    refused = verify(client, site, "000000", ip="10.0.2.1")
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "too_many_attempts"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    for i in range(client_login.VERIFY_PER_IP.count_max):
        verify(client, site, "000000", phone=f"7903555{i:04d}", ip="10.9.9.9")
    assert verify(client, site, "000000", phone=OTHER, ip="10.9.9.9").status_code == 429


def test_sms_once_a_minute_and_logins_limited_per_ip(app, client, site, clock):
    assert login(client, site).status_code == 202
    again = login(client, site)
    assert again.status_code == 429 and 0 < int(again.headers["Retry-After"]) <= 60
    clock.pass_s(61)
    assert login(client, site).status_code == 202
    assert Notification.select().where(Notification.template == "login_code_sms").count() == 2
    for i in range(client_login.LOGIN_PER_IP.count_max):
        login(client, site, phone=f"7903555{i:04d}", ip="10.7.7.7")
    assert login(client, site, phone=OTHER, ip="10.7.7.7").status_code == 429


def test_cors_only_for_the_sites_origins(app, client, api, site):
    preflight = client.options("/api/v1/client/login", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert login(client, site, Origin=ORIGIN).headers["Access-Control-Allow-Origin"] == ORIGIN
    evil = login(client, site, phone=OTHER, Origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in evil.headers
    # Another portal's site origin is not this portal's.
    other = create_key(Portal.create(member_id="portal-b"))
    client.put("/api/v1/client-site", json={"origins": ["https://b.example"]},
               headers={"Authorization": f"Bearer {other}"})
    crossed = login(client, site, phone="79035550001", Origin="https://b.example")
    assert "Access-Control-Allow-Origin" not in crossed.headers


@pytest.mark.parametrize("origin", ["null", "*", "https://shop.example.ru/path",
                                    "javascript:alert(1)", "https://*.example.ru", ""])
def test_site_origins_must_be_exact(api, origin):
    response = api.put("/api/v1/client-site", json={"origins": [origin]})
    assert response.status_code == 422 and "origins.0" in response.get_json()["error"]["fields"]


def test_unknown_or_disabled_site_is_404(client, api, site):
    assert login(client, "site_nope").status_code == 404
    api.put("/api/v1/client-site", json={"enabled": False})
    assert login(client, site).status_code == 404
    assert api.get("/api/v1/client-site").get_json()["site_id"] == site


def test_an_edited_template_without_the_code_still_sends_it(app, client, api, site):
    api.put("/api/v1/settings/notifications",
            json={"templates": {"login_code_sms": {"body": "Здравствуйте, {{ first_name }}!"}}})
    login(client, site)
    assert verify(client, site, deliver_sms(app)).status_code == 200


def test_one_code_gives_one_token_under_parallel_tries(app, site):
    import threading

    first = app.test_client()
    login(first, site)
    code = deliver_sms(app)
    from api.db import db

    db.close()  # each thread opens its own connection
    answers, start = [], threading.Barrier(6)

    def attempt(i):
        start.wait()
        answers.append(verify(app.test_client(), site, code, ip=f"10.3.0.{i}").status_code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.connect(reuse_if_open=True)
    assert sorted(answers) == [200, 401, 401, 401, 401, 401]


def test_an_sms_cut_off_mid_send_is_blanked_too(app, client, site):
    login(client, site)
    row = Notification.get(Notification.template == "login_code_sms")
    Notification.update(status="sending", claimed_until=utcnow() - timedelta(seconds=1)).where(
        Notification.id == row.id).execute()
    delivery.recover_stuck(utcnow())
    after = Notification.get_by_id(row.id)
    assert after.status == "unknown" and not re.search(r"\d{6}", after.body)


def test_ended_throttle_windows_are_purged_and_live_ones_kept(app):
    from api import throttle
    from api.models import Throttle

    now = utcnow()

    def hits(limit, subject, ago_s, times=1):
        for _ in range(times):
            try:
                throttle.hit(limit, subject, now - timedelta(seconds=ago_s))
            except throttle.Throttled:
                pass

    hits(client_login.SMS_PER_MINUTE, "1:79160000001", 61)  # a minute window, ended
    hits(client_login.SMS_PER_MINUTE, "1:79160000002", 30)  # still open
    hits(client_login.SMS_PER_HOUR, "1:79160000001", 3601)  # an hour window, ended
    hits(client_login.SMS_PER_HOUR, "1:79160000003", 1800, times=6)  # open and over its limit
    hits(client_login.VERIFY_PER_IP, "1:10.0.0.1", 1800)
    Throttle.create(key="renamed_limit:x", window_start=now - timedelta(days=2), count=1)
    Throttle.create(key="renamed_limit:y", window_start=now - timedelta(hours=1), count=1)
    assert client_login.purge_throttles(now) == 3
    assert sorted(row.key for row in Throttle.select()) == [
        "client_sms_1h:1:79160000003", "client_sms_1m:1:79160000002",
        "client_verify_ip:1:10.0.0.1", "renamed_limit:y"]
    with pytest.raises(throttle.Throttled):  # the purge opened no closed door
        throttle.hit(client_login.SMS_PER_HOUR, "1:79160000003", now)
    assert client_login.purge_throttles(now) == 0


def test_login_codes_lapsed_a_day_ago_are_purged(app, client, site, clock):
    assert login(client, site).status_code == 202
    clock.pass_s(client_login.CODE_TTL_S + 3600)
    assert login(client, site, phone=OTHER).status_code == 202
    assert client_login.purge_throttles(clock.now) >= 0 and LoginCode.select().count() == 2
    clock.pass_s(client_login.CODES_KEPT_S - 3000)
    client_login.purge_throttles(clock.now)
    assert [row.phone for row in LoginCode.select()] == [OTHER]


def test_the_scheduler_purges_them_every_hour(app):
    worker = app.extensions["worker"]
    worker.start(lanes=False)
    try:
        job = worker.scheduler.get_job("throttles")
        assert job is not None and job.func.__name__ == "purge_throttles"
        assert job.trigger.interval == timedelta(hours=1)
    finally:
        worker.stop()
