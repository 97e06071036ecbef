"""The client's own login: a one-time code by SMS, then a short-lived token for one card.

How the portal is known without an API key: each portal may have one client site
(ClientSite) with a public `site_id`; the web page sends it with the phone. The site id
is not a secret (it sits in the page's source): it only says which portal's cards to
look in. What protects the cards is the code, which only the phone's owner receives.

- Codes: 6 random digits, kept as an HMAC keyed by the app's secret (a plain hash of a
  6-digit code is reversed by trying all million), valid CODE_TTL_S, one use, at most
  CODE_ATTEMPTS_MAX wrong tries, and only the newest code of a phone counts.
- Limits (api.throttle, per portal): SMS per phone once a minute and SMS_PER_HOUR an
  hour; logins and verifications per IP (an IPv6 client by its /64: one line hands out
  a whole /64); verifications per phone; and a budget per site for logins and for
  verifications, so rotating addresses neither bombs every client with SMS at the
  portal's cost nor spreads guesses over all the card phones.
- A token names its card and the card's phone; it stops reading when the site is
  switched off or the card's phone changes, not only when it expires.
- No enumeration: a phone without a card gets the same answer, pays the same limits
  and writes a code row too; only no SMS leaves.
- The SMS is a Notification (the portal's `login_code_sms` template) delivered by the
  outbox worker, never inside the request; its text is blanked once it is sent.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from api import throttle
from api.clock import utcnow
from api.db import connection, db
from api.ledger.errors import InvalidInput
from api.ledger.phones import PhoneError, normalize
from api.models import Card, ClientOrigin, ClientSite, LoginCode, Portal
from api.throttle import Limit

CODE_DIGITS = 6
CODE_TTL_S = 300
CODE_ATTEMPTS_MAX = 5
TOKEN_TTL_S = 1800
TOKEN_PREFIX = "ct."
TEMPLATE = "login_code_sms"
ORIGINS_MAX = 20
ORIGIN_RE = re.compile(r"^https?://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?$")

SMS_PER_MINUTE = Limit("client_sms_1m", 1, 60)
SMS_PER_HOUR = Limit("client_sms_1h", 5, 3600)
LOGIN_PER_IP = Limit("client_login_ip", 20, 3600)
VERIFY_PER_PHONE = Limit("client_verify_phone", 10, 3600)
VERIFY_PER_IP = Limit("client_verify_ip", 30, 3600)
LOGIN_PER_SITE = Limit("client_login_site", 300, 3600)
VERIFY_PER_SITE = Limit("client_verify_site", 1000, 3600)
IPV6_PREFIX_LEN = 64
LIMITS = [SMS_PER_MINUTE, SMS_PER_HOUR, LOGIN_PER_IP, VERIFY_PER_PHONE, VERIFY_PER_IP,
          LOGIN_PER_SITE, VERIFY_PER_SITE]


class LoginError(Exception):
    """A refused login step; the HTTP layer maps `code` to its status."""

    def __init__(self, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields or {}


@dataclass(frozen=True)
class ClientToken:
    portal_id: int
    card_id: int
    number: str | None = None


# ------------------------------------------------------------------ the site

def new_site_id() -> str:
    return "site_" + secrets.token_urlsafe(12)


def site_for(portal: Portal) -> ClientSite | None:
    return ClientSite.get_or_none(ClientSite.portal == portal)


def clean_origins(origins) -> list[str]:
    """Exact origins only ("https://shop.example.ru"): no paths, no wildcards, no "null"."""
    if not isinstance(origins, list) or len(origins) > ORIGINS_MAX:
        raise InvalidInput({"origins": f"Список, не больше {ORIGINS_MAX} адресов."})
    clean = []
    for i, origin in enumerate(origins):
        value = origin.strip().lower().rstrip("/") if isinstance(origin, str) else ""
        if not ORIGIN_RE.match(value):
            raise InvalidInput({f"origins.{i}": "Нужен адрес сайта вида https://shop.example.ru"})
        clean.append(value)
    return sorted(set(clean))


def save_site(portal: Portal, *, enabled: bool | None = None, origins=None) -> ClientSite:
    """Create the portal's site (a new site id) or change it; origins are replaced whole."""
    cleaned = clean_origins(origins) if origins is not None else None
    with db.atomic():
        site = site_for(portal) or ClientSite.create(portal=portal, site_id=new_site_id())
        if enabled is not None:
            site.enabled = enabled
        if cleaned is not None:
            site.origins = json.dumps(cleaned)
            ClientOrigin.delete().where(ClientOrigin.site == site).execute()
            for origin in cleaned:
                ClientOrigin.create(site=site, origin=origin)
        site.updated_at = utcnow()
        site.save()
    return site


def site_by_id(site_id) -> ClientSite:
    site = None
    if isinstance(site_id, str) and len(site_id) <= 40:
        site = ClientSite.get_or_none(ClientSite.site_id == site_id)
    if site is None or not site.enabled:
        raise LoginError("site_not_found", "Сайт не найден или вход клиентов на нём выключен.",
                         {"site": "Неизвестный site_id."})
    return site


def origin_allowed(origin: str | None, portal_id: int | None = None) -> bool:
    """Is `origin` one of the portal's sites' origins (any enabled site's, for a preflight)?"""
    if not origin:
        return False
    query = (ClientOrigin.select().join(ClientSite)
             .where((ClientOrigin.origin == origin.lower()) & ClientSite.enabled))
    if portal_id is not None:
        query = query.where(ClientSite.portal == portal_id)
    return query.exists()


# ------------------------------------------------------------------ codes

def phone_number(raw) -> str:
    try:
        return normalize(raw)
    except PhoneError as exc:
        raise InvalidInput({"phone": str(exc)}) from None


def client_net(ip: str) -> str:
    """What a per-IP limit counts: the address, or for IPv6 its /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX_LEN}", strict=False))


def code_hash(secret_key: str, portal_id: int, phone: str, code: str) -> str:
    message = f"{portal_id}:{phone}:{code}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def request_code(site: ClientSite, raw_phone, ip: str, secret_key: str,
                 now: datetime | None = None) -> dict:
    """Check the limits, record a code and, when the phone has a card, queue the SMS.

    The answer is the same with or without a card.
    """
    now = now or utcnow()
    phone = phone_number(raw_phone)
    portal = site.portal
    throttle.hit(LOGIN_PER_SITE, str(portal.id), now)
    throttle.hit(LOGIN_PER_IP, f"{portal.id}:{client_net(ip)}", now)
    throttle.hit(SMS_PER_MINUTE, f"{portal.id}:{phone}", now)
    throttle.hit(SMS_PER_HOUR, f"{portal.id}:{phone}", now)
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    with db.atomic():
        card = Card.get_or_none((Card.portal == portal) & (Card.number == phone))
        row = LoginCode.create(portal=portal, phone=phone, card=card, created_at=now,
                               code_hash=code_hash(secret_key, portal.id, phone, code),
                               expires_at=now + timedelta(seconds=CODE_TTL_S))
        if card is not None:
            _queue_sms(portal, card, code, row, now)
    return {"sent": True, "expires_in": CODE_TTL_S, "resend_after": SMS_PER_MINUTE.window_s}


def _queue_sms(portal: Portal, card: Card, code: str, row: LoginCode, now: datetime) -> None:
    from notifications import notices
    from notifications import settings as settings_mod
    from notifications.context import card_context

    settings = settings_mod.load(portal)
    context = {**card_context(card), "code": code, "minutes": CODE_TTL_S // 60}
    notification = notices.record(portal, card, TEMPLATE, card.number, context,
                                  f"login:{row.id}", settings, now=now)
    if code not in (notification.body or ""):
        # An edited template that lost {{ code }} would send a useless SMS: use ours.
        settings = {**settings, "templates": {}}
        notification.delete_instance()
        notices.record(portal, card, TEMPLATE, card.number, context, f"login:{row.id}",
                       settings, now=now)


def verify_code(site: ClientSite, raw_phone, code, ip: str, secret_key: str,
                now: datetime | None = None) -> Card:
    """The card whose phone got this code; LoginError for anything else, all alike."""
    now = now or utcnow()
    phone = phone_number(raw_phone)
    portal_id = site.portal_id
    throttle.hit(VERIFY_PER_SITE, str(portal_id), now)
    throttle.hit(VERIFY_PER_IP, f"{portal_id}:{client_net(ip)}", now)
    throttle.hit(VERIFY_PER_PHONE, f"{portal_id}:{phone}", now)
    if not isinstance(code, str) or not re.fullmatch(rf"[0-9]{{{CODE_DIGITS}}}", code):
        raise InvalidInput({"code": f"Код: {CODE_DIGITS} цифр из SMS."})
    with db.atomic():
        row = (LoginCode.select().where((LoginCode.portal == portal_id)
                                        & (LoginCode.phone == phone))
               .order_by(LoginCode.id.desc()).first())
        # Count the try before comparing, with a conditional update: parallel guesses
        # can't share one attempt.
        live = ((LoginCode.consumed_at.is_null()) & (LoginCode.expires_at > now)
                & (LoginCode.attempts < CODE_ATTEMPTS_MAX))
        counted = row is not None and LoginCode.update(attempts=LoginCode.attempts + 1).where(
            (LoginCode.id == row.id) & live).execute() == 1
        good = counted and hmac.compare_digest(
            row.code_hash, code_hash(secret_key, portal_id, phone, code))
        if good and row.card_id is not None:
            used = LoginCode.update(consumed_at=now).where(
                (LoginCode.id == row.id) & LoginCode.consumed_at.is_null()).execute()
            if used == 1:
                return Card.get_by_id(row.card_id)
    raise LoginError("invalid_code", "Код неверный или устарел. Запросите новый.",
                     {"code": "Неверный или устаревший код."})


# ------------------------------------------------------------------ tokens

def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="loyalty-client-token")


def issue_token(card: Card, secret_key: str) -> str:
    return TOKEN_PREFIX + _serializer(secret_key).dumps(
        {"p": card.portal_id, "c": card.id, "n": card.number})


def read_token(token: str, secret_key: str, max_age_s: int | None = None) -> ClientToken:
    if not token.startswith(TOKEN_PREFIX):
        raise LoginError("unauthorized", "Нужен токен клиента: Authorization: Bearer ct.…")
    try:
        data = _serializer(secret_key).loads(token[len(TOKEN_PREFIX):],
                                             max_age=TOKEN_TTL_S if max_age_s is None else max_age_s)
    except SignatureExpired:
        raise LoginError("token_expired", "Сеанс истёк: войдите снова по коду из SMS.") from None
    except BadSignature:
        raise LoginError("unauthorized", "Токен клиента неверен.") from None
    return ClientToken(portal_id=int(data["p"]), card_id=int(data["c"]), number=data.get("n"))


def card_of(token: ClientToken) -> Card:
    """The token's card, while the site is on and the card still has the phone that
    logged in (merged, deleted, renumbered or forgotten since: log in again)."""
    card = (Card.select(Card).join(ClientSite, on=(ClientSite.portal == Card.portal))
            .where((Card.id == token.card_id) & (Card.portal == token.portal_id)
                   & ClientSite.enabled).first())
    if card is None or (token.number is not None and card.number != token.number):
        raise LoginError("unauthorized", "Карта недоступна: войдите снова.")
    return card


CODES_KEPT_S = 86_400  # a spent or lapsed code, kept a day for a support question


def purge_throttles(now: datetime | None = None) -> int:
    """The scheduler's hourly job: the login counters whose windows have ended, and the
    codes lapsed a day ago (each holds a phone: nothing is kept longer than it serves)."""
    now = now or utcnow()
    with connection():
        codes = LoginCode.delete().where(
            LoginCode.expires_at < now - timedelta(seconds=CODES_KEPT_S)).execute()
        return throttle.purge(LIMITS, now) + codes
