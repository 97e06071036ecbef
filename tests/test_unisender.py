"""UniSender clients against mocked APIs in the shapes of shared/protocol/unisender.md."""
from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from notifications.unisender import (
    ClassicClient, GoClient, SendResult, classify, go_idempotence_key,
)

GO_KEY = "go-secret-6f1d2c9e8b7a"
CLASSIC_KEY = "classic-secret-5a4b3c2d1e"
GO_URL = "https://go1.unisender.ru/ru/transactional/api/v1/email/send.json"
SMS_URL = "https://api.unisender.com/ru/api/sendSms"
EMAIL = "anna.petrova@example.ru"
PHONE = "79161234567"


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def go():
    with GoClient(GO_KEY) as client:
        yield client


@pytest.fixture
def classic():
    with ClassicClient(CLASSIC_KEY) as client:
        yield client


def send(go: GoClient, **overrides) -> SendResult:
    args = dict(to_email=EMAIL, to_name="Анна Петрова", subject="Анна, вам начислены бонусы",
                html="<p>Начислено бонусов: 150</p>", from_email="club@shop.example.ru",
                from_name="Клуб лояльности", idempotence_key="accrual-8812")
    return go.send_email(**{**args, **overrides})


def sms(classic: ClassicClient, **overrides) -> SendResult:
    args = dict(phone_digits=PHONE, sender="LoyalClub", text="Начислено бонусов: 150")
    return classic.send_sms(**{**args, **overrides})


def body_text(request) -> str:
    return request.body.decode() if isinstance(request.body, bytes) else request.body


def assert_no_key(result: SendResult, caplog, key: str) -> None:
    assert key not in str(result) and key not in repr(result)
    for record in caplog.records:
        assert key not in record.getMessage()


# ---------------------------------------------------------------- classify

@pytest.mark.parametrize("code", [
    "retry_later", "api_call_limit_exceeded_for_api_key", "api_call_limit_exceeded_for_ip",
    429, 500, 502, 503, "http_429", "http_504", "timeout", "connection_error",
    "temporary_unavailable", "go_901",
])
def test_transient_codes(code):
    assert classify(code) == "transient"


@pytest.mark.parametrize("code", [
    "invalid_api_key", "invalid_arg", "dest_invalid", "src_invalid", "unsubscribed",
    "unsubscribed_globally", "access_denied", "not_enough_money", "go_114", "go_204",
    400, 401, 403, 404, 413, "http_400", "something_new", "", None,
])
def test_permanent_codes(code):
    assert classify(code) == "permanent"


# ---------------------------------------------------------------- Unisender Go

def test_go_success_sends_the_documented_request(rsps, go):
    rsps.post(GO_URL, json={"status": "success", "job_id": "1tQx7e-0009Ab-Kd2P",
                            "emails": [EMAIL], "failed_emails": {}})
    result = send(go, substitutions={"gift_points": 500},
                  metadata={"client_id": 1042, "kind": "accrual"})
    assert result == SendResult(ok=True, message_id="1tQx7e-0009Ab-Kd2P")
    request = rsps.calls[0].request
    assert request.headers["X-API-KEY"] == GO_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.body) == {
        "idempotence_key": "accrual-8812",
        "message": {
            "recipients": [{
                "email": EMAIL,
                "substitutions": {"gift_points": 500, "to_name": "Анна Петрова"},
                "metadata": {"client_id": "1042", "kind": "accrual"},
            }],
            "subject": "Анна, вам начислены бонусы",
            "body": {"html": "<p>Начислено бонусов: 150</p>"},
            "from_email": "club@shop.example.ru",
            "from_name": "Клуб лояльности",
            "global_language": "ru",
            "track_read": 0,
            "track_links": 0,
        },
    }
    assert GO_KEY not in body_text(request)  # the key travels in the header only


def test_go_host_and_base_url(rsps):
    rsps.post("https://go2.unisender.ru/ru/transactional/api/v1/email/send.json",
              json={"status": "success", "job_id": "j2", "emails": [EMAIL]})
    rsps.post("http://localhost:9000/v1/email/send.json",
              json={"status": "success", "job_id": "j3", "emails": [EMAIL]})
    assert send(GoClient(GO_KEY, host="go2")).message_id == "j2"
    assert send(GoClient(GO_KEY, base_url="http://localhost:9000/v1/")).message_id == "j3"
    with pytest.raises(ValueError):
        GoClient(GO_KEY, host="go3")
    with pytest.raises(ValueError):
        GoClient("")


def test_go_plaintext_and_long_to_name(rsps, go):
    rsps.post(GO_URL, json={"status": "success", "job_id": "j", "emails": [EMAIL]})
    send(go, to_name="Я" * 100, plaintext="Начислено бонусов: 150")
    message = json.loads(rsps.calls[0].request.body)["message"]
    assert message["recipients"][0]["substitutions"]["to_name"] == "Я" * 78
    assert message["body"]["plaintext"] == "Начислено бонусов: 150"


def test_go_rejects_bad_arguments_before_sending(go):
    with pytest.raises(ValueError):
        send(go, substitutions={"first name": "Анна"})
    with pytest.raises(ValueError):
        send(go, metadata={f"k{i}": i for i in range(11)})
    with pytest.raises(ValueError):
        send(go, idempotence_key="")


def test_go_idempotence_key_is_short_and_stable():
    assert go_idempotence_key("bonus-tx-8812-1") == "bonus-tx-8812-1"
    long_key = "bonus-tx-" + "9" * 60
    hashed = go_idempotence_key(long_key)
    assert len(hashed) <= 36 and hashed == go_idempotence_key(long_key)
    assert go_idempotence_key("ключ") != "ключ"


@pytest.mark.parametrize("reason, retryable", [
    ("unsubscribed", False), ("invalid", False), ("permanent_unavailable", False),
    ("complained", False), ("blocked", False), ("temporary_unavailable", True),
    ("brand_new_reason", False),
])
def test_go_failed_emails_on_success_is_a_failure(rsps, go, reason, retryable):
    rsps.post(GO_URL, json={"status": "success", "job_id": "1tQx7f-000B1c-Qw9Z",
                            "emails": [], "failed_emails": {EMAIL: reason}})
    result = send(go)
    assert not result.ok
    assert result.error_code == reason
    assert result.retryable is retryable
    assert result.message_id == "1tQx7f-000B1c-Qw9Z"
    assert reason in result.error and EMAIL in result.error


def test_go_failed_emails_matches_address_case_insensitively(rsps, go):
    rsps.post(GO_URL, json={"status": "success", "job_id": "j", "emails": [],
                            "failed_emails": {EMAIL.upper(): "unsubscribed"}})
    assert send(go).error_code == "unsubscribed"


def test_go_duplicate_still_sends_the_first_copy(rsps, go):
    rsps.post(GO_URL, json={"status": "success", "job_id": "j", "emails": [EMAIL],
                            "failed_emails": {EMAIL: "duplicate"}})
    assert send(go) == SendResult(ok=True, message_id="j")


def test_go_no_valid_recipients_uses_the_recipient_reason(rsps, go):
    rsps.post(GO_URL, status=400, json={
        "status": "error", "code": 204, "message": "Error ID:0F3C11. No valid recipients",
        "failed_emails": {EMAIL: "permanent_unavailable"}})
    result = send(go)
    assert (result.ok, result.error_code, result.retryable) == \
        (False, "permanent_unavailable", False)
    assert "Error ID:0F3C11" in result.error


def test_go_no_valid_recipients_but_temporarily_blocked_is_retryable(rsps, go):
    rsps.post(GO_URL, status=400, json={
        "status": "error", "code": 204, "message": "No valid recipients",
        "failed_emails": {EMAIL: "temporary_unavailable"}})
    assert send(go).retryable


@pytest.mark.parametrize("status, body, code, retryable", [
    (404, {"status": "error", "code": 114, "message": "User with id 7 not found"},
     "go_114", False),
    (401, {"status": "error", "code": 102, "message": "Can not decode key"}, "go_102", False),
    (400, {"status": "error", "code": 101, "message": "Invalid argument"}, "go_101", False),
    (413, {"status": "error", "code": 999, "message": "Too large"}, "go_999", False),
    (429, {"status": "error", "code": 111, "message": "Too Many Requests"}, "go_111", True),
    (403, {"status": "error", "code": 901, "message": "Rate limit"}, "go_901", True),
    (500, {"status": "error", "code": 1, "message": "Internal error"}, "go_1", True),
    (503, None, "http_503", True),
    (429, None, "http_429", True),
    (200, None, "bad_response", False),
])
def test_go_errors(rsps, go, status, body, code, retryable):
    if body is None:
        rsps.post(GO_URL, status=status, body="<html>Service Unavailable</html>")
    else:
        rsps.post(GO_URL, status=status, json=body)
    result = send(go)
    assert (result.ok, result.error_code, result.retryable) == (False, code, retryable)
    assert f"HTTP {status}" in result.error


@pytest.mark.parametrize("exc, code", [
    (requests.ConnectTimeout("connect timed out"), "timeout"),
    (requests.ReadTimeout("read timed out"), "timeout"),
    (requests.ConnectionError("Connection refused"), "connection_error"),
])
def test_go_network_failures_are_retryable_results(rsps, go, caplog, exc, code):
    rsps.post(GO_URL, body=exc)
    result = send(go)
    assert (result.ok, result.error_code, result.retryable) == (False, code, True)
    assert_no_key(result, caplog, GO_KEY)


def test_go_key_never_leaks(rsps, go, caplog):
    caplog.set_level(logging.DEBUG)
    rsps.post(GO_URL, status=401, json={"status": "error", "code": 102,
                                        "message": f"Can not decode key {GO_KEY}"})
    rsps.post(GO_URL, body=requests.ConnectionError(f"{GO_URL}?api_key={GO_KEY} failed"))
    for result in (send(go), send(go)):
        assert not result.ok
        assert_no_key(result, caplog, GO_KEY)
    assert GO_KEY not in repr(go) and GO_KEY not in str(go)
    assert caplog.records  # failures are logged, scrubbed


# ---------------------------------------------------------------- classic sendSms

def form(request) -> dict[str, list[str]]:
    return parse_qs(body_text(request))


def test_sms_success_sends_the_documented_request(rsps, classic):
    rsps.post(SMS_URL, json={"result": {"currency": "RUB", "price": 4.2,
                                        "sms_id": "3318842207"}})
    result = sms(classic)
    assert result == SendResult(ok=True, message_id="3318842207")
    request = rsps.calls[0].request
    url = urlsplit(request.url)
    assert parse_qs(url.query) == {"format": ["json"]}  # the key is never in the URL
    assert CLASSIC_KEY not in request.url
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert form(request) == {"api_key": [CLASSIC_KEY], "phone": [PHONE],
                             "sender": ["LoyalClub"], "text": ["Начислено бонусов: 150"]}


def test_sms_base_url_and_lang(rsps):
    rsps.post("http://localhost:9001/en/api/sendSms", json={"result": {"sms_id": 17}})
    client = ClassicClient(CLASSIC_KEY, base_url="http://localhost:9001/", lang="en")
    assert sms(client).message_id == "17"
    with pytest.raises(ValueError):
        ClassicClient(CLASSIC_KEY, lang="de")


def test_sms_dotted_id_survives_as_text(rsps, classic):
    rsps.post(SMS_URL, body='{"result": {"currency": "RUB", "price": 4.2, '
                            '"sms_id": 2376678.79092020303}}',
              content_type="application/json")
    assert sms(classic).message_id == "2376678.79092020303"


def test_sms_result_as_a_list(rsps, classic):
    rsps.post(SMS_URL, json={"result": [
        {"phone": "79000000000", "currency": "RUB", "price": 4.2, "sms_id": "1"},
        {"phone": PHONE, "currency": "RUB", "price": 4.2, "sms_id": "2"}]})
    assert sms(classic).message_id == "2"


def test_sms_single_entry_list_without_phone(rsps, classic):
    rsps.post(SMS_URL, json={"result": [{"currency": "RUB", "price": 4.2, "sms_id": "5"}]})
    assert sms(classic).message_id == "5"


@pytest.mark.parametrize("entry", [
    {"phone": PHONE, "errors": [{"code": "dest_invalid", "message": "bad number"}]},
    {"phone": PHONE, "error": "bad number", "code": "dest_invalid"},
])
def test_sms_per_number_error_inside_result(rsps, classic, entry):
    rsps.post(SMS_URL, json={"result": [entry]})
    result = sms(classic)
    assert (result.ok, result.error_code, result.retryable) == (False, "dest_invalid", False)
    assert "bad number" in result.error


@pytest.mark.parametrize("code, retryable", [
    ("invalid_api_key", False), ("invalid_arg", False), ("dest_invalid", False),
    ("src_invalid", False), ("unsubscribed_globally", False), ("access_denied", False),
    ("not_enough_money", False), ("unspecified", False),
    ("retry_later", True), ("api_call_limit_exceeded_for_api_key", True),
    ("api_call_limit_exceeded_for_ip", True),
])
def test_sms_error_in_a_200_body(rsps, classic, caplog, code, retryable):
    rsps.post(SMS_URL, status=200, json={"error": "AK100313-05 [some text]", "code": code,
                                         "result": ""})
    result = sms(classic)
    assert (result.ok, result.error_code, result.retryable) == (False, code, retryable)
    assert "AK100313-05 [some text]" in result.error
    assert_no_key(result, caplog, CLASSIC_KEY)


def test_sms_error_text_is_html_unescaped(rsps, classic):
    rsps.post(SMS_URL, json={"error": "Sender &quot;Loyal&quot; is not allowed",
                             "code": "src_invalid"})
    assert 'Sender "Loyal" is not allowed' in sms(classic).error


@pytest.mark.parametrize("status, body, code, retryable", [
    (503, "<html>Bad gateway</html>", "http_503", True),
    (429, "Too Many Requests", "http_429", True),
    (404, "<html>Not found</html>", "http_404", False),
    (200, "<html>maintenance</html>", "bad_response", False),
    (500, '{"error": "oops", "code": "unspecified"}', "unspecified", True),
    (200, '{"result": {"currency": "RUB"}}', "bad_response", False),
    (200, '{"result": [{"sms_id": "1"}, {"sms_id": "2"}]}', "bad_response", False),
])
def test_sms_odd_responses(rsps, classic, status, body, code, retryable):
    rsps.post(SMS_URL, status=status, body=body)
    result = sms(classic)
    assert (result.ok, result.error_code, result.retryable) == (False, code, retryable)


@pytest.mark.parametrize("overrides, code", [
    ({"phone_digits": "+79161234567"}, "dest_invalid"),
    ({"phone_digits": "8916"}, "dest_invalid"),
    ({"text": ""}, "invalid_arg"),
    ({"text": "я" * 1001}, "invalid_arg"),
])
def test_sms_bad_input_fails_without_a_call(rsps, classic, overrides, code):
    result = sms(classic, **overrides)
    assert (result.ok, result.error_code, result.retryable) == (False, code, False)
    assert not rsps.calls


@pytest.mark.parametrize("exc, code", [
    (requests.ReadTimeout("read timed out"), "timeout"),
    (requests.ConnectionError("Connection refused"), "connection_error"),
])
def test_sms_network_failures_are_retryable_results(rsps, classic, exc, code):
    rsps.post(SMS_URL, body=exc)
    result = sms(classic)
    assert (result.ok, result.error_code, result.retryable) == (False, code, True)


def test_sms_key_never_leaks(rsps, classic, caplog):
    caplog.set_level(logging.DEBUG)
    # requests puts URLs into its messages; a key in a URL or echoed back must be scrubbed.
    rsps.post(SMS_URL, body=requests.ConnectionError(
        f"HTTPSConnectionPool: Max retries exceeded with url: /ru/api/sendSms?format=json"
        f"&api_key={CLASSIC_KEY}"))
    rsps.post(SMS_URL, json={"error": f"invalid api_key={CLASSIC_KEY}",
                             "code": "invalid_api_key"})
    rsps.post(SMS_URL, json={"error": f"key {CLASSIC_KEY} is wrong", "code": "invalid_api_key"})
    rsps.post(SMS_URL, json={"result": {"sms_id": "1"},
                             "warnings": [{"warning": f"api_key={CLASSIC_KEY}"}]})
    results = [sms(classic) for _ in range(4)]
    assert [r.ok for r in results] == [False, False, False, True]
    for result in results:
        assert_no_key(result, caplog, CLASSIC_KEY)
    assert CLASSIC_KEY not in repr(classic)
    assert len(caplog.records) == 4


class CountingSession(requests.Session):
    closed = 0

    def close(self) -> None:
        self.closed += 1
        super().close()


def test_clients_close_only_their_own_session():
    session = CountingSession()
    GoClient(GO_KEY, session=session).close()
    with ClassicClient(CLASSIC_KEY, session=session):
        pass
    assert session.closed == 0  # the caller's session: not ours to close
    own = GoClient(GO_KEY)
    own.close()
    session.close()
    assert session.closed == 1
