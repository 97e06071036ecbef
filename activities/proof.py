"""Proof before trust: who vouches for a Bitrix24 token, and what it must say.

A form from "Bitrix24" can be forged by anyone; only the OAuth server of the portal can
say whose a token is. What we rely on (bitrix-tools/b24-rest-docs and the official SDK):

- `api-reference/events/safe-event-handlers.md`: OnAppInstall brings the installing
  user's tokens; prove the access_token is genuine, only then remember application_token.
- `settings/oauth/simple-way.md` / `api-reference/common/system/app-info.md`: for trusted
  data call `app.info` **on the authorization server** (`https://<oauth host>/rest/app.info`).
  The portal's own `app.info` answers only ID/CODE/VERSION/STATUS/INSTALLED/... with no
  client id or member id, so it cannot prove anything. The OAuth server's answer (shape in
  b24pysdk 1.3.2 `schemas/api.py` B24AppInfoResultData, used by its `placement_required`)
  is `{"result": {"client_id", "scope", "expires", "user_id", "install": {"installed",
  "version", "status", "scope", "domain", "uri", "client_endpoint", "member_id",
  "member_type"}}}`.
- `settings/oauth/auto-renewal.md` and protocol §2.2: two OAuth servers, `oauth.bitrix.info`
  and `oauth.bitrix24.tech`; the portal names its own in `server_endpoint`.
- `api-reference/common/users/user-admin.md`: `user.admin` (scope basic, any user) answers
  `result: true` when the token's user may manage applications, i.e. is a portal admin.

So an install is accepted when app.info at an allow-listed OAuth server names our
client_id, that member_id and that domain, and `user.admin` at the `client_endpoint` the
OAuth server named (never one from the request) says true. Every probe has a short timeout.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from activities.b24client import B24Client, B24Error, InMemoryTokenStore, PortalAuth

log = logging.getLogger(__name__)

OAUTH_HOSTS = ("oauth.bitrix.info", "oauth.bitrix24.tech")
PROOF_TIMEOUT_S = 5  # a slow or dead host must not hold a web worker
_ENDPOINT_RE = re.compile(r"^https://[A-Za-z0-9.-]{1,253}(:\d{1,5})?/rest/$")
_MEMBER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ProofError(Exception):
    """The request is not proven: 401 (token not vouched for) or 403 (not an admin, not ours)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Proof:
    """What the OAuth server vouched for."""

    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    user_id: int


def oauth_bases(server_endpoint: str | None, override: str | None) -> list[str]:
    """`https://host/` of the OAuth server(s) to ask; only the two Bitrix24 hosts.

    A configured override (tests, a proxy) wins. A form without SERVER_ENDPOINT (older
    frames leave it out) is asked at both hosts, the international one first.
    """
    if override:
        parts = urlsplit(override)
        return [f"{parts.scheme}://{parts.netloc}/"]
    if not server_endpoint:
        return [f"https://{host}/" for host in OAUTH_HOSTS]
    parts = urlsplit(server_endpoint)
    if parts.scheme != "https" or parts.hostname not in OAUTH_HOSTS or parts.port:
        raise ProofError(401, "untrusted_oauth_server",
                         "server_endpoint is not a Bitrix24 OAuth server.")
    return [f"https://{parts.hostname}/"]


def token_url(server_endpoint: str | None, override: str | None) -> str:
    """Where the portal's refresh token is spent: its own OAuth server.

    What is stored was proven, so it is one of the two hosts, or an override that has
    since been removed: then the international host, never the stored address."""
    try:
        base = oauth_bases(server_endpoint, override)[0]
    except ProofError:
        log.warning("stored server_endpoint %r is not a Bitrix24 OAuth server", server_endpoint)
        base = f"https://{OAUTH_HOSTS[0]}/"
    return base + "oauth/token/"


def app_info(base: str, access_token: str, session: requests.Session | None = None) -> dict:
    """`app.info` at the OAuth server. POST with the token in the body, never in a URL."""
    session = session or requests.Session()
    try:
        resp = session.post(base + "rest/app.info", data={"auth": access_token},
                            timeout=PROOF_TIMEOUT_S, allow_redirects=False,
                            headers={"Accept": "application/json"})
        body = resp.json()
    except (requests.RequestException, ValueError) as exc:
        log.warning("app.info at %s failed: %s", base, type(exc).__name__)
        raise ProofError(401, "proof_unavailable",
                         "The Bitrix24 OAuth server could not confirm the token.") from None
    result = body.get("result") if isinstance(body, dict) else None
    if resp.status_code != 200 or not isinstance(result, dict):
        code = str(body.get("error", "")) if isinstance(body, dict) else ""
        log.warning("app.info at %s refused the token (%s)", base, code[:40] or resp.status_code)
        raise ProofError(401, "token_not_proven", "The Bitrix24 token is not valid.")
    return result


def vouched(info: dict, client_id: str, member_id: str, domain: str | None,
            base: str) -> Proof:
    """Check what app.info said against what the request claimed."""
    install = info.get("install") if isinstance(info.get("install"), dict) else {}
    endpoint = str(install.get("client_endpoint") or "")
    checks = (str(info.get("client_id") or "") == client_id,
              str(install.get("member_id") or "") == member_id,
              domain is None or str(install.get("domain") or "").lower() == domain.lower(),
              bool(_ENDPOINT_RE.match(endpoint)), str(info.get("user_id") or "").isdigit())
    if not all(checks):
        log.warning("app.info for %s does not match the request (%s)", member_id,
                    "".join("1" if c else "0" for c in checks))
        raise ProofError(403, "token_not_ours",
                         "The token belongs to another application or portal.")
    return Proof(member_id=member_id, domain=str(install["domain"]), client_endpoint=endpoint,
                 server_endpoint=base + "rest/", user_id=int(info["user_id"]))


def prove_token(access_token: str | None, member_id: str, domain: str | None,
                server_endpoint: str | None, client_id: str, override: str | None = None,
                session: requests.Session | None = None) -> Proof:
    """The OAuth server vouches for this token of this portal and our app, or ProofError."""
    if not client_id:
        raise ProofError(403, "not_configured", "B24_CLIENT_ID is not set: nothing can be proven.")
    if not access_token or len(access_token) > 512 or not _MEMBER_RE.match(member_id or ""):
        raise ProofError(401, "token_missing", "No Bitrix24 token to prove.")
    bases = oauth_bases(server_endpoint, override)
    last: ProofError | None = None
    for base in bases:
        try:
            return vouched(app_info(base, access_token, session), client_id, member_id, domain,
                           base)
        except ProofError as exc:
            last = exc
    assert last is not None
    raise last


def require_admin(proof: Proof, access_token: str, session: requests.Session | None = None) -> None:
    """Install is an admin's act: `user.admin` at the endpoint the OAuth server named."""
    auth = PortalAuth(proof.member_id, proof.client_endpoint, access_token, "")
    probe = B24Client(auth, InMemoryTokenStore(auth), client_id="", client_secret="",
                      session=session, timeout_s=PROOF_TIMEOUT_S)
    try:
        admin = probe.call("user.admin").get("result")
    except B24Error as exc:
        log.warning("user.admin on %s failed (%s)", proof.member_id, exc.code)
        raise ProofError(401, "token_not_proven", "The Bitrix24 token is not valid.") from None
    if admin is not True:
        raise ProofError(403, "not_admin", "Only a portal administrator may install the app.")
