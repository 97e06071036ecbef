"""Who is looking at a page inside the Bitrix24 frame, proven without cookies.

Bitrix24 opens a page with a POST (bitrix24-ui.md §1). `verify_frame` proves it: the
portal is one we installed, APPLICATION_TOKEN (when sent) is the stored one, the OAuth
server of the portal vouches for the user's AUTH_ID (`app.info`: our client_id, this
member_id; activities/proof.py), and only then `profile` at the endpoint *stored* for the
portal says who the user is. A forged frame therefore costs the portal nothing: it is
refused locally or by the OAuth server, never probed against the portal's rate limit.

Then `issue` signs a viewer token that forms and fetch calls carry in a POST body or a
header, never in a URL (access logs, Referer). It lives minutes and holds the viewer's own
AUTH_ID, encrypted, so reads of the CRM act with the viewer's rights, not the installer's.
Every request also carries a CSRF value (an HMAC of the token's nonce under the secret
key) which no URL ever shows: the token alone, say copied from a log, opens nothing.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from activities.b24client import B24Client, B24Error
from activities.portals import B24Settings, adopt_tokens, viewer_client
from activities.proof import ProofError, prove_token
from api.models import Portal

TOKEN_MAX_AGE_S = 15 * 60  # minutes, not the hour AUTH_ID lives: a leaked token dies soon
AUTH_EXPIRES_DEFAULT_S = 3600
TOKEN_FIELD, CSRF_FIELD = "t", "csrf"
TOKEN_HEADER, CSRF_HEADER = "X-Loyalty-Token", "X-CSRF-Token"
FIELD_MAX_LEN = 512  # longer than any real member_id or token: longer is an attack
NAME_MAX_LEN = 120
_SALT = "loyalty.pages.viewer"


class PageError(Exception):
    """Stop and show an error page: 401 (not proven), 403 (no right), 404, 400."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Viewer:
    """The proven Bitrix24 user of one portal; `issued_at` is when the frame was verified."""

    member_id: str
    user_id: int
    name: str
    is_admin: bool
    lang: str = "ru"
    nonce: str = ""
    issued_at: float = 0.0
    auth_id: str = field(default="", repr=False)  # the viewer's own Bitrix24 token

    def client(self, portal: Portal) -> B24Client:
        """Bitrix24 as this viewer may see it (their CRM rights apply)."""
        return viewer_client(portal, self.auth_id, current_app.extensions.get("b24_session"))

    @property
    def actor(self) -> str:
        """Recorded with every change made from a page."""
        return f"b24:user_{self.user_id} {self.name}".strip()[:200]


def verify_frame(form, args) -> Viewer:
    """Prove a frame POST (form fields + query string) or raise PageError(401).

    Writes nothing but, for the installing admin, the fresh tokens the frame brought.
    """
    member_id, auth_id = _field(form, "member_id"), _field(form, "AUTH_ID")
    if not member_id or not auth_id:
        raise PageError(401, "Откройте приложение из Битрикс24.")
    portal = Portal.get_or_none(Portal.member_id == member_id)
    if portal is None or portal.status != "active" or not portal.client_endpoint:
        raise PageError(401, "Приложение не установлено на этом портале.")
    app_token = _field(form, "APPLICATION_TOKEN")
    if app_token and not _same(portal.application_token, app_token):
        raise PageError(401, "Запрос не из Битрикс24: неверный APPLICATION_TOKEN.")
    user_id = _vouched_user(portal, auth_id)
    profile = _profile(portal, auth_id)
    if int(profile["ID"]) != user_id:
        raise PageError(401, "Авторизация Битрикс24 не подтвердилась. Откройте приложение заново.")
    _adopt(portal, user_id, auth_id, _field(form, "REFRESH_ID"), _field(form, "AUTH_EXPIRES"))
    name = " ".join(str(profile.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
    return Viewer(member_id=member_id, user_id=user_id,
                  name=name[:NAME_MAX_LEN] or f"#{profile['ID']}",
                  is_admin=profile.get("ADMIN") in (True, "Y", "1", 1, "true"),
                  lang=lang_of(args.get("LANG")), nonce=secrets.token_urlsafe(16),
                  issued_at=time.time(), auth_id=auth_id)


def _vouched_user(portal: Portal, auth_id: str) -> int:
    """The OAuth server of the portal (as stored at install) says whose token this is."""
    settings = B24Settings.from_config(current_app.config)
    try:
        proof = prove_token(auth_id, portal.member_id, None, portal.server_endpoint,
                            settings.client_id, settings.oauth_url,
                            current_app.extensions.get("b24_session"))
    except ProofError as exc:
        current_app.logger.warning("frame for %s not proven: %s", portal.member_id, exc.code)
        raise PageError(401, "Авторизация Битрикс24 не подтвердилась или истекла. "
                             "Откройте приложение заново.") from None
    return proof.user_id


def _adopt(portal: Portal, user_id: int, auth_id: str, refresh_id: str, expires_in: str) -> None:
    lifetime = int(expires_in) if expires_in.isdigit() else AUTH_EXPIRES_DEFAULT_S
    if adopt_tokens(portal, user_id, auth_id, refresh_id, int(time.time()) + lifetime):
        current_app.logger.info("portal %s: stored tokens renewed from the admin's frame",
                                portal.member_id)


def _field(form, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or len(value) > FIELD_MAX_LEN:
        return ""
    return value.strip()


def _same(stored: str | None, given: str) -> bool:
    return bool(stored) and hmac.compare_digest(stored.encode(), given.encode())


def _profile(portal: Portal, auth_id: str) -> dict:
    """`profile` at the stored endpoint with the user's token; no refresh (no refresh token)."""
    probe = viewer_client(portal, auth_id, current_app.extensions.get("b24_session"))
    try:
        profile = probe.call("profile").get("result")
    except B24Error as exc:
        current_app.logger.warning("frame for %s refused: %s", portal.member_id, exc.code)
        raise PageError(401, "Авторизация Битрикс24 не подтвердилась или истекла. "
                             "Откройте приложение заново.") from None
    if not isinstance(profile, dict) or not str(profile.get("ID", "")).isdigit():
        raise PageError(401, "Пользователь не активен на портале.")  # inactive: empty result
    return profile


def lang_of(value) -> str:
    return "en" if isinstance(value, str) and value.lower().startswith("en") else "ru"


# --- the viewer token and CSRF --------------------------------------------------------------

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"loyalty.pages.auth:" + _secret()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _secret() -> bytes:
    key = current_app.config["SECRET_KEY"]
    return key if isinstance(key, bytes) else key.encode()


def issue(viewer: Viewer) -> str:
    """The signed viewer token: who and when, and the viewer's AUTH_ID encrypted."""
    return _serializer().dumps({"m": viewer.member_id, "u": viewer.user_id, "n": viewer.name,
                                "a": viewer.is_admin, "l": viewer.lang, "c": viewer.nonce,
                                "k": _fernet().encrypt(viewer.auth_id.encode()).decode()})


def read_token(token) -> Viewer:
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise PageError(401, "Откройте приложение из Битрикс24.")
    try:
        data, stamp = _serializer().loads(token, max_age=TOKEN_MAX_AGE_S, return_timestamp=True)
        auth_id = _fernet().decrypt(data["k"].encode()).decode()
    except SignatureExpired:
        raise PageError(401, "Страница устарела. Откройте приложение заново.") from None
    except (BadSignature, InvalidToken, KeyError, TypeError, AttributeError):
        raise PageError(401, "Неверная подпись страницы. Откройте приложение заново.") from None
    return Viewer(member_id=data["m"], user_id=data["u"], name=data["n"], is_admin=data["a"],
                  lang=data["l"], nonce=data["c"], issued_at=stamp.timestamp(), auth_id=auth_id)


def csrf_for(viewer: Viewer) -> str:
    return hmac.new(_secret(), f"csrf:{viewer.nonce}".encode(), hashlib.sha256).hexdigest()


def _check_csrf(viewer: Viewer) -> None:
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), csrf_for(viewer).encode()):
        raise PageError(403, "Форма устарела или подделана. Откройте страницу заново.")


def viewer_required(view):
    """For every route after the frame entry: sets g.viewer and g.portal.

    The token comes from a POST body or a header only, and the CSRF value is checked on
    every request, reads included: a token without it (from a log, a Referer) opens nothing.
    """
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        token = request.form.get(TOKEN_FIELD) or request.headers.get(TOKEN_HEADER)
        viewer = read_token(token)
        portal = Portal.get_or_none(Portal.member_id == viewer.member_id)
        if portal is None or portal.status != "active":
            raise PageError(401, "Приложение не установлено на этом портале.")
        _check_csrf(viewer)
        g.viewer, g.portal, g.token = viewer, portal, token
        return view(*args, **kwargs)
    return wrapped
