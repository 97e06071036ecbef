"""Inbound Bitrix24 posts (actions/robots, events, install) parsed at the edge.

Everything arrives form-encoded with PHP bracket keys and string values; inner code only
sees the frozen objects built here. Token fields are left out of every repr.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from b24pysdk.credentials._utils import parse_flattened_keys

PAIRS_MAX = 1000
KEY_DEPTH_MAX = 8
VALUE_SHOWN_MAX = 40  # how much of a bad value an error message may quote

_DOCUMENT_ID_RE = re.compile(r"^([A-Z][A-Z0-9_]*)_(\d+)$")
_DECIMAL_RE = re.compile(r"^[+-]?\d{1,30}(\.\d{1,12})?$")
_INT_RE = re.compile(r"^[+-]?\d{1,18}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$")
_SPACES_RE = re.compile(r"[\s\u00a0\u202f\u2009']")  # thousands separators seen in locales
_BOOLS = {"y": True, "yes": True, "1": True, "true": True,
          "n": False, "no": False, "0": False, "false": False}
_DATE_FORMATS = ("%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%m/%d/%Y",
                 "%m/%d/%Y %I:%M %p", "%m/%d/%Y %I:%M:%S %p")


class FormError(ValueError):
    """A bad or missing inbound field; `field` names it (a property code for converters)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class InboundAuth:
    member_id: str
    application_token: str = field(repr=False)
    domain: str = ""
    client_endpoint: str = ""
    server_endpoint: str = ""
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires: int | None = None  # unix time the access token dies
    expires_in: int | None = None
    user_id: int | None = None
    scope: tuple[str, ...] = ()
    status: str = ""

    def expires_at(self, now: int) -> int:
        """Unix expiry; forms that only carry a lifetime are counted from `now`."""
        if self.expires:
            return self.expires
        return now + (self.expires_in or 3600)


@dataclass(frozen=True)
class WorkflowCall:
    workflow_id: str
    code: str
    document_id: tuple[str, str, str]
    document_type: tuple[str, ...]
    event_token: str = field(repr=False)
    properties: Mapping[str, Any]
    use_subscription: bool
    timeout_duration: int
    ts: int
    auth: InboundAuth


@dataclass(frozen=True)
class InboundEvent:
    event: str
    event_handler_id: int | None
    data: Mapping[str, Any]
    ts: int
    auth: InboundAuth


@dataclass(frozen=True)
class InstallRequest:
    is_frame: bool  # True: admin's browser frame (§1.2); False: server callback (§1.3)
    auth: InboundAuth
    event: str = ""
    lang: str = ""
    placement: str = ""
    ts: int = 0
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


# --- brackets ---------------------------------------------------------------------------------

def parse_brackets(items: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, Any]:
    """Rebuild PHP bracket keys: `a[b][0]=x` -> {'a': {'b': ['x']}}; 0..n keys become lists.

    Accepts pairs, a plain mapping or a werkzeug MultiDict. Repeated plain keys keep the
    last value and `a[]` appends, as PHP does.
    """
    flat: dict[str, str] = {}
    appended: dict[str, int] = {}
    for count, (key, value) in enumerate(_pairs(items)):
        if count >= PAIRS_MAX or key.count("[") > KEY_DEPTH_MAX:
            raise FormError("form", "too many fields or nesting too deep")
        if key.endswith("[]"):
            index = appended.get(key, 0)
            appended[key] = index + 1
            key = f"{key[:-2]}[{index}]"
        flat[key] = value
    try:
        return parse_flattened_keys(flat)
    except (AttributeError, TypeError, IndexError):
        raise FormError("form", "conflicting or empty bracket keys") from None


def _pairs(items: Any) -> Iterable[tuple[str, str]]:
    if hasattr(items, "getlist"):  # werkzeug MultiDict
        return items.items(multi=True)
    if isinstance(items, Mapping):
        return items.items()
    return items


# --- payloads ---------------------------------------------------------------------------------

def parse_workflow_call(form: Any) -> WorkflowCall:
    """The POST a workflow action or robot sends to its HANDLER (§4.2)."""
    data = parse_brackets(form)
    ts = _opt_int(data, "ts") or 0
    return WorkflowCall(
        workflow_id=_opt_str(data, "workflow_id"),
        code=_req_str(data, "code"),
        document_id=_document_id(data.get("document_id")),
        document_type=_str_tuple("document_type", data.get("document_type", [])),
        event_token=_req_str(data, "event_token"),
        properties=MappingProxyType(dict(_sub(data, "properties"))),
        use_subscription=to_bool(data.get("use_subscription"), "use_subscription", True),
        timeout_duration=_opt_int(data, "timeout_duration") or 0,
        ts=ts,
        auth=_auth(_sub(data, "auth")),
    )


def parse_event(form: Any) -> InboundEvent:
    """An event handler POST; `auth` may hold no tokens at all (§1.5, §7.7)."""
    data = parse_brackets(form)
    return InboundEvent(
        event=_req_str(data, "event").upper(),
        event_handler_id=_opt_int(data, "event_handler_id"),
        data=MappingProxyType(dict(_sub(data, "data"))),
        ts=_opt_int(data, "ts") or 0,
        auth=_auth(_sub(data, "auth")),
    )


def parse_install(form: Any, args: Mapping[str, str] | None = None) -> InstallRequest:
    """Either install form: the frame POST (§1.2) or the server callback (§1.3, §1.4)."""
    data = parse_brackets(form)
    if isinstance(data.get("auth"), Mapping):
        return _install_callback(data)
    if "member_id" in data or "AUTH_ID" in data:
        return _install_frame(data, args or {})
    raise FormError("auth", "neither an install frame nor an install callback")


def _install_callback(data: Mapping[str, Any]) -> InstallRequest:
    return InstallRequest(
        is_frame=False,
        auth=_auth(_sub(data, "auth")),
        event=_opt_str(data, "event").upper(),
        lang=str(_sub(data, "data").get("LANGUAGE_ID", "")),
        ts=_opt_int(data, "ts") or 0,
        data=MappingProxyType(dict(_sub(data, "data"))),
    )


def _install_frame(data: Mapping[str, Any], args: Mapping[str, str]) -> InstallRequest:
    domain = str(args.get("DOMAIN") or "")
    if not _HOST_RE.match(domain):
        raise FormError("DOMAIN", "missing or not a host name")
    scheme = "http" if str(args.get("PROTOCOL", "1")) == "0" else "https"
    auth = InboundAuth(
        member_id=_req_str(data, "member_id"),
        application_token=_req_str(data, "APPLICATION_TOKEN"),
        domain=domain,
        client_endpoint=f"{scheme}://{domain}/rest/",
        server_endpoint=_endpoint(data, "SERVER_ENDPOINT"),
        access_token=_opt_str(data, "AUTH_ID") or None,
        refresh_token=_opt_str(data, "REFRESH_ID") or None,
        expires_in=_opt_int(data, "AUTH_EXPIRES"),
        scope=_scope(data.get("APPLICATION_SCOPE")),
        status=_opt_str(data, "status"),
    )
    return InstallRequest(is_frame=True, auth=auth, lang=str(args.get("LANG") or ""),
                          placement=_opt_str(data, "PLACEMENT"))


def _auth(raw: Mapping[str, Any]) -> InboundAuth:
    def req(key: str) -> str:
        return _req_str(raw, key, f"auth[{key}]")

    return InboundAuth(
        member_id=req("member_id"),
        application_token=req("application_token"),
        domain=_opt_str(raw, "domain"),
        client_endpoint=_endpoint(raw, "client_endpoint"),
        server_endpoint=_endpoint(raw, "server_endpoint"),
        access_token=_opt_str(raw, "access_token") or None,
        refresh_token=_opt_str(raw, "refresh_token") or None,
        expires=_opt_int(raw, "expires", "auth[expires]"),
        expires_in=_opt_int(raw, "expires_in", "auth[expires_in]"),
        user_id=_opt_int(raw, "user_id", "auth[user_id]"),
        scope=_scope(raw.get("scope")),
        status=_opt_str(raw, "status"),
    )


def document_entity(document_id: Iterable[str]) -> tuple[str, int]:
    """['crm','CCrmDocumentContact','CONTACT_42'] -> ('CONTACT', 42), as the PHP SDK splits it."""
    parts = tuple(document_id)
    match = _DOCUMENT_ID_RE.match(parts[2]) if len(parts) == 3 else None
    if match is None:
        raise FormError("document_id", "expected [module, class, TYPE_<id>]")
    return match.group(1), int(match.group(2))


# --- field helpers ----------------------------------------------------------------------------

def _sub(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if value in ("", []):  # PHP drops empty arrays; an empty string means the same here
        return {}
    if not isinstance(value, Mapping):
        raise FormError(key, "expected bracketed sub-keys")
    return value


def _req_str(data: Mapping[str, Any], key: str, name: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FormError(name or key, "required")
    return value.strip()


def _opt_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    return value.strip() if isinstance(value, str) else ""


def _opt_int(data: Mapping[str, Any], key: str, name: str | None = None) -> int | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    return to_int(value, name or key)


def _endpoint(data: Mapping[str, Any], key: str) -> str:
    value = _opt_str(data, key)
    if value and not re.match(r"^https?://[^/\s]+/", value):
        raise FormError(key, "not an http(s) URL")
    return value


def _scope(value: Any) -> tuple[str, ...]:
    # Documented as comma-separated in most places and space-separated in one.
    return tuple(s for s in re.split(r"[,\s]+", value) if s) if isinstance(value, str) else ()


def _document_id(value: Any) -> tuple[str, str, str]:
    parts = _str_tuple("document_id", value)
    if len(parts) != 3:
        raise FormError("document_id", "required: three elements")
    return parts[0], parts[1], parts[2]


def _str_tuple(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormError(name, "expected a list of strings")
    return tuple(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_SHOWN_MAX else text[:VALUE_SHOWN_MAX] + "..."


# --- property converters ----------------------------------------------------------------------

def to_decimal(value: Any, field: str = "value") -> Decimal:
    """'1500.50', '1500,50', '1 500.50' -> Decimal('1500.50'). Never goes through float."""
    if isinstance(value, Decimal) and value.is_finite():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, str):
        raise FormError(field, f"expected a number, got {_shown(value)}")
    text = _SPACES_RE.sub("", value)
    if "," in text and "." in text:
        raise FormError(field, f"ambiguous decimal separators in {_shown(value)}")
    text = text.replace(",", ".")
    if not _DECIMAL_RE.match(text):
        raise FormError(field, f"not a decimal number: {_shown(value)}")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise FormError(field, f"not a decimal number: {_shown(value)}") from None


def to_int(value: Any, field: str = "value") -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not _INT_RE.match(value.strip()):
        raise FormError(field, f"not a whole number: {_shown(value)}")
    return int(value.strip())


def to_bool(value: Any, field: str = "value", default: bool = False) -> bool:
    """Y/N as Bitrix sends, plus 1/0, true/false, yes/no; empty means `default`."""
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    raise FormError(field, f"expected Y or N, got {_shown(value)}")


def to_user_id(value: Any, field: str = "value") -> int:
    """'user_7', '7', ['user_7'] -> 7: the user property shape is unconfirmed (§4.3)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise FormError(field, f"expected one user, got {len(value)}")
        value = value[0]
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.lower().startswith("user_"):
        text = text[len("user_"):]
    try:
        user_id = to_int(text, field)
    except FormError:
        raise FormError(field, f"not a user reference: {_shown(value)}") from None
    if user_id <= 0:
        raise FormError(field, f"not a user reference: {_shown(value)}")
    return user_id


def to_date(value: Any, field: str = "value") -> date:
    """A date property in ISO or the portal's locale format (§4.3).

    An ISO datetime with an offset is read in UTC: Bitrix prints a date-only value as local
    midnight shifted by the server's offset, so the UTC date is the calendar date (§7.1).
    """
    if isinstance(value, datetime):
        return _utc_date(value)
    if isinstance(value, date):
        return value
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise FormError(field, f"expected a date, got {_shown(value)}")
    parsed = _parse_datetime(text)
    if parsed is None:
        raise FormError(field, f"not a date: {_shown(value)}")
    return _utc_date(parsed)


def _parse_datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _utc_date(value: datetime) -> date:
    if value.tzinfo is None:
        return value.date()
    return value.astimezone(timezone.utc).date()
