"""Who is looking at a page inside the Bitrix24 frame, proven without cookies.

Bitrix24 opens a page with a POST (bitrix24-ui.md §1). `verify_frame` proves it: the
portal is one we installed, APPLICATION_TOKEN (when sent) is the stored one, and the
user's AUTH_ID works for `profile` at the endpoint *stored* for that portal, never at a
DOMAIN from the request, which a forger controls. Then `issue` signs a short-lived
viewer token that links, forms and fetch calls carry (Safari and Firefox drop
third-party cookies, so a session cookie would not survive inside the iframe).

Every POST carries a CSRF token too: an HMAC of the viewer token's nonce. A viewer
token may leak through a GET URL; without the CSRF value it still cannot write.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from activities.b24client import B24Client, B24Error, InMemoryTokenStore, PortalAuth
from api.models import Portal

TOKEN_MAX_AGE_S = 3600  # as long as Bitrix24's own AUTH_ID lives
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

    @property
    def actor(self) -> str:
        """Recorded with every change made from a page."""
        return f"b24:user_{self.user_id} {self.name}".strip()[:200]


def verify_frame(form, args) -> Viewer:
    """Prove a frame POST (form fields + query string) or raise PageError(401).

    Writes nothing: a forged or expired frame leaves no trace but a log line.
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
    profile = _profile(portal, auth_id)
    name = " ".join(str(profile.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
    return Viewer(member_id=member_id, user_id=int(profile["ID"]),
                  name=name[:NAME_MAX_LEN] or f"#{profile['ID']}",
                  is_admin=profile.get("ADMIN") in (True, "Y", "1", 1, "true"),
                  lang=lang_of(args.get("LANG")), nonce=secrets.token_urlsafe(16),
                  issued_at=time.time())


def _field(form, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or len(value) > FIELD_MAX_LEN:
        return ""
    return value.strip()


def _same(stored: str | None, given: str) -> bool:
    return bool(stored) and hmac.compare_digest(stored.encode(), given.encode())


def _profile(portal: Portal, auth_id: str) -> dict:
    """`profile` at the stored endpoint with the user's token; no refresh (no refresh token)."""
    auth = PortalAuth(portal.member_id, portal.client_endpoint, auth_id, "")
    probe = B24Client(auth, InMemoryTokenStore(auth), client_id="", client_secret="",
                      session=current_app.extensions.get("b24_session"))
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


def issue(viewer: Viewer) -> str:
    """The signed viewer token (not encrypted: it holds no secret, only who and when)."""
    return _serializer().dumps({"m": viewer.member_id, "u": viewer.user_id, "n": viewer.name,
                                "a": viewer.is_admin, "l": viewer.lang, "c": viewer.nonce})


def read_token(token) -> Viewer:
    if not isinstance(token, str) or not token or len(token) > 2048:
        raise PageError(401, "Откройте приложение из Битрикс24.")
    try:
        data, stamp = _serializer().loads(token, max_age=TOKEN_MAX_AGE_S, return_timestamp=True)
    except SignatureExpired:
        raise PageError(401, "Страница устарела. Откройте приложение заново.") from None
    except BadSignature:
        raise PageError(401, "Неверная подпись страницы. Откройте приложение заново.") from None
    return Viewer(member_id=data["m"], user_id=data["u"], name=data["n"], is_admin=data["a"],
                  lang=data["l"], nonce=data["c"], issued_at=stamp.timestamp())


def csrf_for(viewer: Viewer) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"csrf:{viewer.nonce}".encode(), hashlib.sha256).hexdigest()


def _check_csrf(viewer: Viewer) -> None:
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), csrf_for(viewer).encode()):
        raise PageError(403, "Форма устарела или подделана. Откройте страницу заново.")


def viewer_required(view):
    """For every route after the frame entry: sets g.viewer and g.portal, checks CSRF on POST."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        token = (request.form.get(TOKEN_FIELD) or request.headers.get(TOKEN_HEADER)
                 or request.args.get(TOKEN_FIELD))
        viewer = read_token(token)
        portal = Portal.get_or_none(Portal.member_id == viewer.member_id)
        if portal is None or portal.status != "active":
            raise PageError(401, "Приложение не установлено на этом портале.")
        if request.method == "POST":
            _check_csrf(viewer)
        g.viewer, g.portal, g.token = viewer, portal, token
        return view(*args, **kwargs)
    return wrapped
