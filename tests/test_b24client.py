"""B24Client against `responses` mocks: no network, no real sleeping."""
from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
import responses
from responses import matchers

from activities.b24client import (
    B24AuthError, B24Client, B24Error, B24PermanentError, B24TransientError, InMemoryTokenStore,
    PortalAuth, RateLimiter, http_build_query,
)

MEMBER = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ENDPOINT = "https://example.bitrix24.com/rest/"
NEW_ENDPOINT = "https://renamed.bitrix24.com/rest/"
OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"
CLIENT_ID = "local.6790a1b2c3d4e5.12345678"
SECRET = "XyZ-client-secret-never-shown"
OLD_AT = "a1b2c3d4e5f60718293a4b5c6d7e8f90old-access"
OLD_RT = "ff00ee11dd22cc33bb44aa5599668877old-refresh"
NEW_AT = "0a9b8c7d6e5f40312a3b4c5d6e7f8091new-access"
NEW_RT = "9f8e7d6c5b4a39281706f5e4d3c2b1a0new-refresh"
SECRETS = (SECRET, OLD_AT, OLD_RT, NEW_AT, NEW_RT)

EXPIRED = {"error": "expired_token", "error_description": "The access token provided has expired."}
REFRESHED = {  # Sample F of the protocol doc
    "access_token": NEW_AT, "refresh_token": NEW_RT, "expires": 1767232800, "expires_in": 3600,
    "scope": "crm,bizproc,im,user_brief", "domain": "oauth.bitrix.info",
    "server_endpoint": "https://oauth.bitrix.info/rest/", "client_endpoint": ENDPOINT,
    "member_id": MEMBER, "status": "L", "user_id": 1,
}
REFRESH_QUERY = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": SECRET,
                 "refresh_token": OLD_RT}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def store() -> InMemoryTokenStore:
    return InMemoryTokenStore(PortalAuth(MEMBER, ENDPOINT, OLD_AT, OLD_RT, 1767229200))


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_client(store: InMemoryTokenStore, limiter: RateLimiter | None = None) -> B24Client:
    clock = FakeClock()
    return B24Client(store.load(MEMBER), store, client_id=CLIENT_ID, client_secret=SECRET,
                     oauth_url=OAUTH_URL,
                     limiter=limiter or RateLimiter(clock=clock, sleep=clock.sleep))


def by_token(old: tuple[int, dict], new: tuple[int, dict]):
    """A POST callback answering by the `auth` token in the JSON body."""
    def callback(request):
        status, body = old if json.loads(request.body)["auth"] == OLD_AT else new
        return status, {}, json.dumps(body)
    return callback


def posts(rsps) -> list:
    """Calls to the portal."""
    return [c for c in rsps.calls if not c.request.url.startswith(OAUTH_URL)]


def gets(rsps) -> list:
    """Calls to the OAuth server: a form POST, the secrets in the body, never in the URL."""
    found = [c for c in rsps.calls if c.request.url.startswith(OAUTH_URL)]
    assert all(c.request.method == "POST" and "?" not in c.request.url for c in found)
    return found


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- call -------------------------------------------------------------------------------------

def test_call_posts_json_with_auth_and_returns_envelope(store, rsps):
    envelope = {"result": {"ID": "42"}, "time": {"start": 1.0}}
    rsps.post(ENDPOINT + "crm.contact.get", json=envelope)
    client = make_client(store)

    assert client.call("crm.contact.get", {"id": 42, "sum": Decimal("1500.50")}) == envelope
    request = rsps.calls[0].request
    assert json.loads(request.body) == {"id": 42, "sum": "1500.50", "auth": OLD_AT}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("b24-loyalty/")
    assert client.requests_made == 1


@pytest.mark.parametrize("status, code, kind", [
    (400, "", B24PermanentError),
    (400, "ERROR_CORE", B24PermanentError),
    (403, "ACCESS_DENIED", B24PermanentError),
    (404, "NOT_FOUND", B24PermanentError),
    (401, "NO_AUTH_FOUND", B24AuthError),
    (401, "PAYMENT_REQUIRED", B24AuthError),
    (429, "OPERATION_TIME_LIMIT", B24TransientError),
    (500, "INTERNAL_SERVER_ERROR", B24TransientError),
    (502, "", B24TransientError),
    (200, "ERROR_ACTIVITY_ALREADY_INSTALLED", B24PermanentError),
])
def test_error_body_is_read_whatever_the_status(store, rsps, status, code, kind):
    rsps.post(ENDPOINT + "crm.contact.update", status=status,
              json={"error": code, "error_description": "Contact is not found"})
    with pytest.raises(kind) as info:
        make_client(store).call("crm.contact.update", {"id": 1})
    assert (info.value.code, info.value.status) == (code, status)
    assert info.value.description == "Contact is not found"
    assert info.value.retryable is (kind is B24TransientError)


def test_query_limit_exceeded_is_transient_and_not_retried(store, rsps):
    rsps.post(ENDPOINT + "crm.contact.get", status=503,
              json={"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
    client = make_client(store)
    with pytest.raises(B24TransientError) as info:
        client.call("crm.contact.get", {"id": 1})
    assert info.value.retryable and info.value.code == "QUERY_LIMIT_EXCEEDED"
    assert client.requests_made == 1 and len(rsps.calls) == 1


@pytest.mark.parametrize("exc", [requests.exceptions.ConnectTimeout("slow"),
                                 requests.exceptions.ConnectionError("refused")])
def test_network_failures_are_transient(store, rsps, exc):
    rsps.post(ENDPOINT + "crm.contact.get", body=exc)
    with pytest.raises(B24TransientError):
        make_client(store).call("crm.contact.get", {"id": 1})


def test_non_json_body_is_an_error(store, rsps):
    rsps.post(ENDPOINT + "crm.contact.get", status=502, body="<html>Bad gateway</html>")
    with pytest.raises(B24TransientError):
        make_client(store).call("crm.contact.get", {})


def test_method_name_cannot_escape_the_rest_path(store):
    with pytest.raises(ValueError):
        make_client(store).call("../admin", {})


# --- expired_token and refresh ----------------------------------------------------------------

def test_expired_token_refreshes_once_saves_both_tokens_and_repeats(store, rsps):
    rsps.add_callback(responses.POST, ENDPOINT + "crm.contact.get",
                      callback=by_token((401, EXPIRED), (200, {"result": {"ID": "42"}})))
    rsps.post(OAUTH_URL, json=REFRESHED, match=[matchers.urlencoded_params_matcher(REFRESH_QUERY)])
    client = make_client(store)

    assert client.call("crm.contact.get", {"id": 42})["result"] == {"ID": "42"}
    assert len(gets(rsps)) == 1 and len(posts(rsps)) == 2
    assert json.loads(posts(rsps)[1].request.body) == {"id": 42, "auth": NEW_AT}
    saved = store.load(MEMBER)
    assert (saved.access_token, saved.refresh_token) == (NEW_AT, NEW_RT)
    assert (saved.expires_at, saved.client_endpoint) == (1767232800, ENDPOINT)
    assert client.requests_made == 3


def test_refresh_keeps_client_endpoint_and_ignores_oauth_domain(store, rsps):
    rsps.add_callback(responses.POST, ENDPOINT + "user.current",
                      callback=by_token((401, EXPIRED), (200, {"result": {}})))
    rsps.post(NEW_ENDPOINT + "user.current", json={"result": {}})
    rsps.post(OAUTH_URL, json={**REFRESHED, "client_endpoint": NEW_ENDPOINT})
    make_client(store).call("user.current", {})
    assert store.load(MEMBER).client_endpoint == NEW_ENDPOINT
    assert "oauth.bitrix.info" not in store.load(MEMBER).client_endpoint


@pytest.mark.parametrize("status, body", [
    (400, {"error": "invalid_grant", "error_description": "Invalid grant"}),
    (200, {"error": "wrong_client", "error_description": "Wrong client"}),
    (200, {"error": "invalid_grant"}),
    (401, {"error": "NOT_INSTALLED", "error_description": "Application not installed"}),
    (200, {"access_token": NEW_AT}),  # no refresh token: cannot be stored safely
])
def test_refresh_failure_is_an_auth_error(store, rsps, status, body):
    rsps.post(ENDPOINT + "crm.contact.get", status=401, json=EXPIRED)
    rsps.post(OAUTH_URL, status=status, json=body)
    with pytest.raises(B24AuthError) as info:
        make_client(store).call("crm.contact.get", {"id": 1})
    assert not info.value.retryable
    assert store.load(MEMBER).refresh_token == OLD_RT
    assert len(posts(rsps)) == 1


def test_oauth_server_overload_is_transient(store, rsps):
    rsps.post(ENDPOINT + "crm.contact.get", status=401, json=EXPIRED)
    rsps.post(OAUTH_URL, status=503, json={"error": "QUERY_LIMIT_EXCEEDED"})
    with pytest.raises(B24TransientError):
        make_client(store).call("crm.contact.get", {"id": 1})


def test_still_expired_after_refresh_gives_up(store, rsps):
    rsps.post(ENDPOINT + "crm.contact.get", status=401, json=EXPIRED)
    rsps.post(OAUTH_URL, json=REFRESHED)
    with pytest.raises(B24AuthError):
        make_client(store).call("crm.contact.get", {"id": 1})
    assert len(gets(rsps)) == 1 and len(posts(rsps)) == 2


def test_token_refreshed_elsewhere_is_reused_without_refreshing(store, rsps):
    client = make_client(store)
    store.save(MEMBER, NEW_AT, NEW_RT, 1767232800, ENDPOINT)  # another worker got there first
    rsps.add_callback(responses.POST, ENDPOINT + "crm.contact.get",
                      callback=by_token((401, EXPIRED), (200, {"result": True})))
    assert client.call("crm.contact.get", {})["result"] is True
    assert gets(rsps) == []


def test_concurrent_expired_tokens_trigger_one_refresh(store, rsps):
    both_expired = threading.Barrier(2, timeout=5)

    def post(request):
        if json.loads(request.body)["auth"] == OLD_AT:
            both_expired.wait()  # both threads hold the dead token before anyone refreshes
            return 401, {}, json.dumps(EXPIRED)
        return 200, {}, json.dumps({"result": True})

    rsps.add_callback(responses.POST, ENDPOINT + "crm.contact.get", callback=post)
    rsps.post(OAUTH_URL, json=REFRESHED)
    clients = [make_client(store), make_client(store)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(c.call, "crm.contact.get", {}) for c in clients]
        results = [f.result(timeout=10) for f in futures]

    assert [r["result"] for r in results] == [True, True]
    assert len(gets(rsps)) == 1
    assert store.load(MEMBER).refresh_token == NEW_RT


# --- portal rename (302) ----------------------------------------------------------------------

def test_redirect_is_reposted_with_same_body_and_new_endpoint_saved(store, rsps):
    rsps.post(ENDPOINT + "crm.contact.update", status=302,
              headers={"Location": NEW_ENDPOINT + "crm.contact.update.json?x=1"})
    rsps.post(NEW_ENDPOINT + "crm.contact.update", json={"result": True})
    client = make_client(store)
    params = {"id": 42, "fields": {"NAME": "Anna"}}

    assert client.call("crm.contact.update", params)["result"] is True
    first, second = posts(rsps)
    assert second.request.url == NEW_ENDPOINT + "crm.contact.update"
    assert json.loads(second.request.body) == json.loads(first.request.body)
    assert store.load(MEMBER).client_endpoint == NEW_ENDPOINT
    assert store.load(MEMBER).refresh_token == OLD_RT
    assert client.endpoint == NEW_ENDPOINT

    client.call("crm.contact.update", params)  # no second trip through the old host
    assert posts(rsps)[-1].request.url == NEW_ENDPOINT + "crm.contact.update"
    assert client.requests_made == 3


def test_redirect_loop_stops_after_three_hops(store, rsps):
    rsps.post(ENDPOINT + "app.info", status=302, headers={"Location": ENDPOINT + "app.info"})
    client = make_client(store)
    with pytest.raises(B24PermanentError) as info:
        client.call("app.info", {})
    assert info.value.code == "TOO_MANY_REDIRECTS"
    assert client.requests_made == 4
    assert store.load(MEMBER).client_endpoint == ENDPOINT


def test_redirect_to_plain_http_is_refused(store, rsps):
    rsps.post(ENDPOINT + "app.info", status=302,
              headers={"Location": "http://renamed.bitrix24.com/rest/app.info"})
    with pytest.raises(B24PermanentError):
        make_client(store).call("app.info", {})


# --- batch ------------------------------------------------------------------------------------

def test_http_build_query_matches_php_brackets():
    params = {"id": 42, "fields": {"UF_CRM_X": "79161234567",
                                   "PHONE": [{"VALUE": "+7 916 123-45-67", "VALUE_TYPE": "WORK"}]},
              "filter": {">=DATE_MODIFY": "2026-01-01", "CONTACT_ID": "$result[c_contact][ID]"},
              "skip": None, "empty": []}
    assert http_build_query(params) == (
        "id=42&fields[UF_CRM_X]=79161234567"
        "&fields[PHONE][0][VALUE]=%2B7%20916%20123-45-67&fields[PHONE][0][VALUE_TYPE]=WORK"
        "&filter[%3E%3DDATE_MODIFY]=2026-01-01&filter[CONTACT_ID]=$result[c_contact][ID]")
    assert http_build_query({"q": "a&b=c"}) == "q=a%26b%3Dc"


def test_batch_encodes_commands_and_reads_php_empty_arrays(store, rsps):
    rsps.post(ENDPOINT + "batch", json={"result": {
        "result": [], "result_error": {"c_upd": {"error": "", "error_description": "Not found"}},
        "result_total": [], "result_next": []}, "time": {}})
    result = make_client(store).batch({
        "c_upd": ("crm.contact.update", {"id": 42, "fields": {"UF_CRM_X": "79161234567"}}),
        "c_list": ("crm.deal.list", {"filter": {"CONTACT_ID": 42}, "select": ["ID"]}),
        "c_me": ("user.current", {}),
    })

    sent = json.loads(rsps.calls[0].request.body)
    assert sent["halt"] == 0 and sent["auth"] == OLD_AT
    assert sent["cmd"] == {"c_upd": "crm.contact.update?id=42&fields[UF_CRM_X]=79161234567",
                           "c_list": "crm.deal.list?filter[CONTACT_ID]=42&select[0]=ID",
                           "c_me": "user.current"}
    assert result.results == {} and not result.ok("c_upd")
    assert result.errors["c_upd"].description == "Not found"
    with pytest.raises(B24PermanentError):
        result.result("c_upd")
    with pytest.raises(KeyError):
        result.result("c_list")


def test_batch_mixed_success_and_errors_by_key(store, rsps):
    rsps.post(ENDPOINT + "batch", json={"result": {
        "result": {"c_contact": {"ID": "42"}, "c_deals": [{"ID": "1188"}]},
        "result_error": {"c_missing": {"error": "NOT_FOUND", "error_description": "Not found"}},
        "result_total": {"c_deals": 1}, "result_next": [], "result_time": {}}})
    result = make_client(store).batch({
        "c_contact": ("crm.contact.get", {"id": 42}),
        "c_deals": ("crm.deal.list", {"filter": {"CONTACT_ID": "$result[c_contact][ID]"}}),
        "c_missing": ("crm.contact.get", {"id": 999999}),
    }, halt=True)
    assert json.loads(rsps.calls[0].request.body)["halt"] == 1
    assert result.result("c_contact") == {"ID": "42"} and result.ok("c_deals")
    assert result.totals == {"c_deals": 1} and result.next == {}
    assert result.errors["c_missing"].code == "NOT_FOUND"


def test_batch_limits(store, rsps):
    client = make_client(store)
    with pytest.raises(ValueError):
        client.batch({f"c_{i}": ("user.current", {}) for i in range(51)})
    for bad in ({"0": ("user.current", {})}, {"c_1": ("batch", {})}, {"a b": ("x.y", {})}):
        with pytest.raises(ValueError):
            client.batch(bad)
    assert client.requests_made == 0 and len(rsps.calls) == 0


# --- rate limiter -----------------------------------------------------------------------------

def test_limiter_burst_then_two_per_second():
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=2.0, burst=50, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        limiter.acquire(MEMBER)
    assert clock.sleeps == []

    limiter.acquire(MEMBER)
    limiter.acquire(MEMBER)
    assert clock.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]
    assert clock.now == pytest.approx(1.0)

    limiter.acquire("another-portal")  # buckets are per portal
    assert len(clock.sleeps) == 2

    clock.now += 10  # idle time refills up to 20 slots, never beyond the burst
    for _ in range(20):
        limiter.acquire(MEMBER)
    assert len(clock.sleeps) == 2


def test_client_goes_through_the_limiter(store, rsps):
    rsps.post(ENDPOINT + "user.current", json={"result": {}})
    clock = FakeClock()
    client = make_client(store, RateLimiter(rate_per_s=2.0, burst=1, clock=clock,
                                            sleep=clock.sleep))
    client.call("user.current", {})
    client.call("user.current", {})
    assert clock.sleeps == [pytest.approx(0.5)]


# --- secrets ----------------------------------------------------------------------------------

def test_secrets_never_reach_messages_reprs_or_logs(store, rsps, caplog):
    caplog.set_level(logging.DEBUG)
    leak = f"client_secret={SECRET}&refresh_token={OLD_RT}"
    rsps.post(ENDPOINT + "crm.contact.get", status=401, json=EXPIRED)
    rsps.post(OAUTH_URL, status=400,
             json={"error": "invalid_client", "error_description": f"bad {leak} auth={OLD_AT}"})
    client = make_client(store)
    with pytest.raises(B24AuthError) as info:
        client.call("crm.contact.get", {"id": 1})

    for text in (str(info.value), repr(info.value), info.value.description, repr(client),
                 repr(store.load(MEMBER)), caplog.text):
        assert_no_secrets(text)
    assert "***" in str(info.value)


def test_transport_error_text_is_masked(store, rsps):
    url = f"{OAUTH_URL}?grant_type=refresh_token&client_secret={SECRET}&refresh_token={OLD_RT}"
    rsps.post(ENDPOINT + "crm.contact.get", status=401, json=EXPIRED)
    rsps.post(OAUTH_URL, body=requests.exceptions.ConnectionError(f"Max retries with url: {url}"))
    with pytest.raises(B24TransientError) as info:
        make_client(store).call("crm.contact.get", {})
    assert_no_secrets(str(info.value))
    assert info.value.__suppress_context__


def test_error_hierarchy():
    err = B24TransientError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
    assert isinstance(err, B24Error) and err.retryable
    assert not B24PermanentError("ACCESS_DENIED").retryable
    assert not B24AuthError("invalid_grant").retryable
