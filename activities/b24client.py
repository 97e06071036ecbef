"""Bitrix24 REST client: the only module that builds Bitrix24 HTTP requests.

Built on plain `requests`, not on b24pysdk 1.3.2, because the SDK's requesters call the
module-level `requests.post/get` (no injectable session, so no shared pool and no request
counting), retry HTTP 503 internally with `time.sleep` (our outbox owns retries), hard-code
the OAuth host `oauth.bitrix24.tech`, and refresh tokens in-object with no per-portal lock and
no "re-read the store first" step, which lets two workers race on one refresh token.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Iterator, Mapping, Protocol
from urllib.parse import quote, urljoin, urlsplit

import requests

# One bucket per portal for every process of the host (background.ratelimit).
from background.ratelimit import RateLimiter, shared as shared_limiter

log = logging.getLogger(__name__)

USER_AGENT = "b24-loyalty/0.1.0 (+python-requests)"
BATCH_COMMANDS_MAX = 50  # the server rejects more with ERROR_BATCH_LENGTH_EXCEEDED
REDIRECT_HOPS_MAX = 3
OAUTH_TIMEOUT_S = 10  # a refresh runs under the portal's lock: keep the lock short
MASK = "***"

_METHOD_RE = re.compile(r"^[A-Za-z0-9_.]{1,128}$")
_BATCH_KEY_RE = re.compile(r"^(?!\d+$)[A-Za-z0-9_\-]{1,64}$")
_SECRET_PARAM_RE = re.compile(
    r"((?:access_token|refresh_token|client_secret|auth|AUTH_ID|REFRESH_ID)=)[^&\s\"']+"
)
_REFRESH_CODES = frozenset({"EXPIRED_TOKEN", "INVALID_TOKEN"})
_TRANSIENT_CODES = frozenset({"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "OVERLOAD_LIMIT",
                              "INTERNAL_SERVER_ERROR", "423"})
_AUTH_CODES = frozenset({
    "EXPIRED_TOKEN", "INVALID_TOKEN", "NO_AUTH_FOUND", "INVALID_GRANT", "INVALID_CLIENT",
    "WRONG_CLIENT", "NOT_INSTALLED", "APPLICATION_NOT_FOUND", "ERROR_OAUTH",
    "AUTHORIZATION_ERROR", "PAYMENT_REQUIRED", "INVALID_CREDENTIALS", "INSUFFICIENT_SCOPE",
    "INVALID_SCOPE", "PORTAL_DELETED",
})


# --- errors -----------------------------------------------------------------------------------

class B24Error(Exception):
    """A Bitrix24 failure. Messages are built from already-masked text only."""

    retryable: ClassVar[bool] = False

    def __init__(self, code: str, description: str = "", status: int | None = None) -> None:
        self.code = code
        self.description = description
        self.status = status
        super().__init__(f"{code or 'ERROR'} (HTTP {status}): {description}")


class B24TransientError(B24Error):
    """Rate limits, 5xx, timeouts: the outbox may retry with backoff."""

    retryable = True


class B24AuthError(B24Error):
    """Tokens are unusable even after a refresh: the portal must re-authorise the app."""


class B24PermanentError(B24Error):
    """The request itself is wrong or forbidden; repeating it changes nothing."""


def classify(code: str, description: str, status: int | None) -> B24Error:
    """Map a Bitrix24 error code and HTTP status to the matching typed error."""
    upper = (code or "").upper()
    if upper in _TRANSIENT_CODES or status in (423, 429) or (status or 0) >= 500:
        return B24TransientError(code, description, status)
    if upper in _AUTH_CODES or status == 401:
        return B24AuthError(code, description, status)
    return B24PermanentError(code, description, status)


# --- tokens -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PortalAuth:
    """Credentials of one portal; `expires_at` is unix time, 0 when unknown."""

    member_id: str
    client_endpoint: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: int = 0


class TokenStore(Protocol):
    def lock(self, member_id: str) -> AbstractContextManager[Any]:
        """Serialise refreshes of one portal (PortalTokenStore: across processes too)."""

    def load(self, member_id: str) -> PortalAuth:
        """Fresh read: another worker may have refreshed since we last looked."""

    def save(self, member_id: str, access_token: str, refresh_token: str, expires_at: int,
             client_endpoint: str) -> None:
        """Persist a token pair; the old refresh token must be dropped."""


class InMemoryTokenStore:
    """TokenStore for tests and single-process tools."""

    def __init__(self, *portals: PortalAuth) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._auth: dict[str, PortalAuth] = {p.member_id: p for p in portals}

    def lock(self, member_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(member_id, threading.Lock())

    def load(self, member_id: str) -> PortalAuth:
        with self._guard:
            return self._auth[member_id]

    def save(self, member_id: str, access_token: str, refresh_token: str, expires_at: int,
             client_endpoint: str) -> None:
        auth = PortalAuth(member_id, client_endpoint, access_token, refresh_token, expires_at)
        with self._guard:
            self._auth[member_id] = auth


# --- batch ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchError:
    code: str
    description: str


@dataclass(frozen=True)
class BatchResult:
    results: Mapping[str, Any]
    errors: Mapping[str, BatchError]
    totals: Mapping[str, Any]
    next: Mapping[str, Any]
    times: Mapping[str, Any] = field(default_factory=dict)  # per key: `time`, with `operating`

    def ok(self, key: str) -> bool:
        return key in self.results and key not in self.errors

    def result(self, key: str) -> Any:
        """The command's result; its typed error if it failed; KeyError if it never ran."""
        if key in self.errors:
            err = self.errors[key]
            raise classify(err.code, err.description, None)
        return self.results[key]


def http_build_query(params: Mapping[str, Any]) -> str:
    """PHP `http_build_query` for batch commands: `a[b][0]=x`, None and empty arrays dropped.

    Values keep `$[]` literal so `$result[key][FIELD]` references survive whether the portal
    substitutes them before or after decoding the query.
    """
    return "&".join(f"{key}={quote(value, safe='$[]')}" for key, value in _flatten(params, ""))


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif value is None:
        return
    else:
        yield prefix, str(value)
        return
    for key, inner in items:
        name = quote(str(key), safe="")
        yield from _flatten(inner, f"{prefix}[{name}]" if prefix else name)


def _as_map(value: Any) -> dict[str, Any]:
    """PHP sends an empty map as `[]` and a numerically keyed one as a list."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(i): item for i, item in enumerate(value)}
    return {}


# --- client -----------------------------------------------------------------------------------

class B24Client:
    """Calls one portal's REST API with its stored OAuth tokens.

    Retries nothing except one token refresh on `expired_token` and up to three 302 hops
    after a portal rename; transient errors go back to the caller's outbox.
    """

    def __init__(self, portal: PortalAuth, store: TokenStore, *, client_id: str,
                 client_secret: str, oauth_url: str = "https://oauth.bitrix.info/oauth/token/",
                 session: requests.Session | None = None, limiter: RateLimiter | None = None,
                 timeout_s: float = 10) -> None:  # short: a worker must not hang on a portal
        self._auth = portal
        self._store = store
        self._client_id = client_id
        self._client_secret = client_secret
        self._oauth_url = oauth_url
        self._session = session or requests.Session()
        self._limiter = limiter or shared_limiter()
        self._timeout_s = timeout_s
        self._state_lock = threading.Lock()
        self._secrets: set[str] = {client_secret}
        self.requests_made = 0
        self._remember(portal)

    def __repr__(self) -> str:
        return f"B24Client(member_id={self._auth.member_id!r}, endpoint={self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        return self._auth.client_endpoint

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one method; returns the whole envelope (`result`, `time`, `total`, `next`)."""
        _check_method(method)
        used = self._auth
        status, body = self._post(method, dict(params or {}))
        if _error_code(body).upper() in _REFRESH_CODES:
            self._refresh(used)
            status, body = self._post(method, dict(params or {}))
        self._raise_for_error(status, body)
        return body  # type: ignore[return-value]

    def batch(self, cmds: Mapping[str, tuple[str, Mapping[str, Any]]],
              halt: bool = False) -> BatchResult:
        """Run up to 50 commands in one request; failures are reported per key."""
        encoded = _encode_batch(cmds)
        body = self.call("batch", {"halt": 1 if halt else 0, "cmd": encoded})
        return self._parse_batch(body.get("result"))

    # -- HTTP -----------------------------------------------------------------------------------

    def _post(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """POST, re-POSTing by hand on 3xx: `requests` would turn it into a bodyless GET."""
        endpoint = self._auth.client_endpoint
        for _ in range(REDIRECT_HOPS_MAX + 1):
            payload = json.dumps({**params, "auth": self._auth.access_token}, default=_json_default)
            self._limiter.acquire(self._auth.member_id)
            resp = self._send("POST", endpoint + method, data=payload,
                              headers={"Content-Type": "application/json"})
            if not 300 <= resp.status_code < 400:
                if endpoint != self._auth.client_endpoint:
                    self._persist_endpoint(endpoint)
                return resp.status_code, _json_body(resp)
            endpoint = _rest_endpoint(resp.headers.get("Location"), endpoint)
            log.warning("portal %s redirected to %s", self._auth.member_id, endpoint)
        raise B24PermanentError("TOO_MANY_REDIRECTS", f"more than {REDIRECT_HOPS_MAX} hops", 302)

    def _send(self, verb: str, url: str, **kwargs: Any) -> requests.Response:
        with self._state_lock:
            self.requests_made += 1
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json",
                   **kwargs.pop("headers", {})}
        timeout_s = min(kwargs.pop("timeout_s", self._timeout_s), self._timeout_s)
        try:
            resp = self._session.request(verb, url, headers=headers, timeout=timeout_s,
                                         allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise self._transport_error(exc) from None  # the cause may quote secrets
        log.debug("%s %s -> %s", verb, urlsplit(url).path, resp.status_code)
        return resp

    def _transport_error(self, exc: requests.RequestException) -> B24Error:
        text = self._scrub(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                            requests.exceptions.InvalidSchema)):
            return B24PermanentError("INVALID_URL", text)
        return B24TransientError("NETWORK_ERROR", text)

    def _raise_for_error(self, status: int, body: dict[str, Any] | None) -> None:
        if body is None:
            raise self._error("INVALID_RESPONSE", "response is not a JSON object", status)
        if "error" in body or status >= 400:
            raise self._error(_error_code(body), str(body.get("error_description", "")), status)

    def _error(self, code: str, description: str, status: int | None) -> B24Error:
        return classify(self._scrub(code), self._scrub(description), status)

    # -- tokens ---------------------------------------------------------------------------------

    def _refresh(self, used: PortalAuth) -> None:
        """Refresh once per portal: the loser of the lock race reuses the winner's tokens."""
        member_id = used.member_id
        with self._store.lock(member_id):
            fresh = self._store.load(member_id)
            if fresh.access_token != used.access_token:
                self._adopt(fresh)
                return
            if not fresh.refresh_token:
                raise B24AuthError("NO_REFRESH_TOKEN", "no refresh token stored", 401)
            new = self._oauth_refresh(fresh)
            self._store.save(member_id, new.access_token, new.refresh_token, new.expires_at,
                             new.client_endpoint)
            self._adopt(new)
        log.info("refreshed tokens of portal %s", member_id)

    def _oauth_refresh(self, old: PortalAuth) -> PortalAuth:
        # A form POST, not the documented GET: a query string lands in urllib3's DEBUG log,
        # proxies' and the OAuth server's access logs. oauth.bitrix24.tech answers the POST
        # the same (b24jssdk issue #149 / PR #239, checked against the live server).
        form = {"grant_type": "refresh_token", "client_id": self._client_id,
                "client_secret": self._client_secret, "refresh_token": old.refresh_token}
        resp = self._send("POST", self._oauth_url, data=form, timeout_s=OAUTH_TIMEOUT_S)
        body = _json_body(resp)
        if body is None or "error" in body or resp.status_code >= 400:
            raise self._oauth_error(resp.status_code, body)
        new = _auth_from_oauth(old, body)
        if new is None:
            raise B24AuthError("INVALID_OAUTH_RESPONSE", "tokens or member_id missing",
                               resp.status_code)
        self._remember(new)
        return new

    def _oauth_error(self, status: int, body: dict[str, Any] | None) -> B24Error:
        """Anything the OAuth server refuses is an auth problem, unless it is overloaded."""
        body = body or {}
        code = _error_code(body) or f"HTTP_{status}"
        err = self._error(code, str(body.get("error_description", "")), status)
        if err.retryable:
            return err
        return B24AuthError(err.code, err.description, status)

    def _persist_endpoint(self, endpoint: str) -> None:
        member_id = self._auth.member_id
        with self._store.lock(member_id):
            fresh = self._store.load(member_id)
            self._store.save(member_id, fresh.access_token, fresh.refresh_token,
                             fresh.expires_at, endpoint)
            self._adopt(replace(fresh, client_endpoint=endpoint))

    def _adopt(self, auth: PortalAuth) -> None:
        self._remember(auth)
        with self._state_lock:
            self._auth = auth

    def _remember(self, auth: PortalAuth) -> None:
        with self._state_lock:
            self._secrets.update(s for s in (auth.access_token, auth.refresh_token) if s)

    def _scrub(self, text: str) -> str:
        with self._state_lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if len(secret) >= 6:
                text = text.replace(secret, MASK)
        return _SECRET_PARAM_RE.sub(rf"\g<1>{MASK}", text)

    def _parse_batch(self, raw: Any) -> BatchResult:
        raw = _as_map(raw)
        failed = _as_map(raw.get("result_error")).items()
        errors = {key: self._batch_error(err) for key, err in failed}
        return BatchResult(results=_as_map(raw.get("result")), errors=errors,
                           totals=_as_map(raw.get("result_total")),
                           next=_as_map(raw.get("result_next")),
                           times=_as_map(raw.get("result_time")))

    def _batch_error(self, err: Any) -> BatchError:
        if not isinstance(err, dict):
            return BatchError("", self._scrub(str(err)))
        return BatchError(self._scrub(_error_code(err)),
                          self._scrub(str(err.get("error_description", ""))))


# --- helpers ----------------------------------------------------------------------------------

def _check_method(method: str) -> None:
    # The name becomes part of the URL path: keep it to the characters method names use.
    if not _METHOD_RE.match(method):
        raise ValueError(f"bad Bitrix24 method name: {method!r}")


def _encode_batch(cmds: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    if len(cmds) > BATCH_COMMANDS_MAX:
        raise ValueError(f"batch takes at most {BATCH_COMMANDS_MAX} commands, got {len(cmds)}")
    encoded = {}
    for key, (method, params) in cmds.items():
        # PHP turns numeric keys into a list and the per-key errors become unmappable.
        if not isinstance(key, str) or not _BATCH_KEY_RE.match(key):
            raise ValueError(f"batch keys must be non-numeric [A-Za-z0-9_-] strings: {key!r}")
        _check_method(method)
        if method.lower() == "batch":
            raise ValueError("batch cannot be nested")
        query = http_build_query(params)
        encoded[key] = f"{method}?{query}" if query else method
    return encoded


def _json_default(value: Any) -> str:
    """Amounts go out as exact decimal strings, dates as ISO: never through float."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_body(resp: requests.Response) -> dict[str, Any] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_code(body: Mapping[str, Any] | None) -> str:
    code = (body or {}).get("error")
    return "" if code is None else str(code)


def _rest_endpoint(location: str | None, current: str) -> str:
    """`https://new.bitrix24.com/rest/crm.contact.get?x` -> `https://new.bitrix24.com/rest/`."""
    if not location:
        raise B24PermanentError("REDIRECT_WITHOUT_LOCATION", "3xx without Location", 302)
    url = urlsplit(urljoin(current, location))
    if url.scheme not in ("http", "https") or not url.netloc or (
            urlsplit(current).scheme == "https" and url.scheme != "https"):
        raise B24PermanentError("BAD_REDIRECT", "redirect to a non-https or odd URL", 302)
    cut = url.path.find("/rest/")
    path = url.path[:cut + len("/rest/")] if cut >= 0 else "/rest/"
    return f"{url.scheme}://{url.netloc}{path}"


def _auth_from_oauth(old: PortalAuth, body: Mapping[str, Any]) -> PortalAuth | None:
    """Build the new credentials. `domain` here is oauth.bitrix.info, so it is never used."""
    access, refresh = body.get("access_token"), body.get("refresh_token")
    member_id = str(body.get("member_id") or old.member_id)
    if not access or not refresh or member_id != old.member_id:
        return None
    endpoint = str(body.get("client_endpoint") or "")
    if not re.match(r"^https?://[^/\s]+/rest/$", endpoint):
        endpoint = old.client_endpoint
    expires = body.get("expires")
    expires_at = int(expires) if str(expires or "").isdigit() else 0
    return PortalAuth(old.member_id, endpoint, str(access), str(refresh), expires_at)
