"""UniSender provider clients: Unisender Go for e-mail, the classic API for SMS.

Reference: /work/shared/protocol/unisender.md (§1 classic API, §3 Unisender Go, §5 pitfalls).
Go is e-mail only and the classic API has no idempotency, so a notice needs both (§4).

The clients never retry and never raise on provider or network failures: every outcome is a
`SendResult`, and the caller's outbox retries with backoff when `retryable` is true.
API keys never leave this module: error texts, log records and reprs are scrubbed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from html import unescape
from typing import Any, Literal, Mapping

import requests

log = logging.getLogger(__name__)

GO_HOSTS = ("go1", "go2")
CLASSIC_BASE_URL = "https://api.unisender.com"
CLASSIC_LANGS = ("ru", "en", "ua", "it")
TIMEOUT_S_DEFAULT = 20
# Go: the To: display name is capped at 78 chars, about 10 metadata slots (§3.3).
GO_TO_NAME_MAX = 78
GO_METADATA_KEYS_MAX = 10
# Go: key placement and limits are UNCONFIRMED (§3.7); 36 is the only figure seen.
IDEMPOTENCE_KEY_MAX = 36
SMS_TEXT_MAX = 1000  # classic sendSms accepts up to 1000 characters (§1.6)
ERROR_TEXT_MAX = 500  # keeps provider HTML pages out of the outbox table

_SUBSTITUTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # Go's rule (§3.3)
_SAFE_IDEMPOTENCE_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,%d}" % IDEMPOTENCE_KEY_MAX)
_PHONE_DIGITS = re.compile(r"\d{10,15}")  # E.164 without '+', as sendSms expects (§2)
# Catches a key put into a URL or form body by anyone, not only by us.
_API_KEY_PARAM = re.compile(r"(api_key=)[^&\s'\"]+", re.IGNORECASE)

Severity = Literal["transient", "permanent"]

_TRANSIENT_CODES = frozenset({
    "retry_later",  # classic: temporary failure (§1.4)
    "api_call_limit_exceeded_for_api_key",  # classic rate limits, retry after ~60 s (§1.4)
    "api_call_limit_exceeded_for_ip",
    "timeout",  # our codes for network failures
    "connection_error",
    "temporary_unavailable",  # Go failed_emails: blocked ~3 days after bounces (§3.4)
    # Classic: same recipient within 60 s; a later attempt goes through (§1.4, UNCONFIRMED
    # for SMS).
    "has_been_sent",
    # Go API codes one client treats as rate limiting under HTTP 403 (§3.5, UNCONFIRMED).
    "go_901", "go_902", "go_905", "go_906",
})

# Readable Russian names for the codes a manager is likely to see in the outbox.
_DESCRIPTIONS = {
    "invalid_api_key": "неверный API-ключ",
    "access_denied": "нет доступа к методу API",
    "invalid_arg": "неверный параметр запроса",
    "not_enough_money": "недостаточно средств на счёте UniSender",
    "retry_later": "временный сбой UniSender",
    "api_call_limit_exceeded_for_api_key": "превышен лимит запросов по ключу",
    "api_call_limit_exceeded_for_ip": "превышен лимит запросов с IP-адреса",
    "dest_invalid": "неверный номер получателя",
    "src_invalid": "имя отправителя SMS не зарегистрировано",
    "unsubscribed_globally": "получатель отписался",
    "has_been_sent": "этому получателю уже отправляли сообщение меньше минуты назад",
    "unsubscribed": "получатель отписался от рассылок",
    "invalid": "неверный адрес e-mail",
    "temporary_unavailable": "адрес временно недоступен",
    "permanent_unavailable": "адрес недоступен",
    "complained": "получатель пожаловался на спам",
    "blocked": "адрес заблокирован",
    "go_114": "неверный сервер Unisender Go (go1/go2) для этого аккаунта",
    "go_204": "нет ни одного допустимого получателя",
}


def classify(code_or_status: str | int | None) -> Severity:
    """Whether a failure is worth retrying: the one place that decides.

    Takes an HTTP status (int), one of our `http_<status>` / `go_<api code>` codes, or a
    provider code string. Unknown codes are permanent: retrying a mistake only repeats it.
    """
    if isinstance(code_or_status, int):
        return "transient" if code_or_status == 429 or code_or_status >= 500 else "permanent"
    code = str(code_or_status or "")
    if code.startswith("http_") and code[5:].isdigit():
        return classify(int(code[5:]))
    return "transient" if code in _TRANSIENT_CODES else "permanent"


def _is_transient(*codes: str | int | None) -> bool:
    return any(classify(code) == "transient" for code in codes if code is not None)


@dataclass(frozen=True)
class SendResult:
    """Outcome of one send; `message_id` is Go's job_id or the classic sms_id, as text."""

    ok: bool
    message_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    retryable: bool = False


class _Client:
    """Shared transport: one POST, network failures turned into results, secrets scrubbed."""

    def __init__(self, api_key: str, *, url: str, session: requests.Session | None,
                 timeout_s: float) -> None:
        if not api_key:
            raise ValueError("UniSender API key is empty")
        self._api_key = api_key
        self._url = url
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._url!r}, api_key='***')"

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _post(self, url: str, **kwargs: Any) -> requests.Response | SendResult:
        try:
            return self._session.post(url, timeout=self._timeout_s, **kwargs)
        except requests.Timeout:
            return self._fail("timeout", f"UniSender не ответил за {self._timeout_s} с")
        except requests.RequestException as exc:
            # requests puts the URL (and so anything in it) into its messages: scrubbed below.
            return self._fail("connection_error",
                              f"Нет связи с UniSender: {type(exc).__name__}: {exc}")

    def _fail(self, code: str, text: str, *, retryable: bool | None = None,
              message_id: str | None = None) -> SendResult:
        text = self._scrub(text)
        if retryable is None:
            retryable = _is_transient(code)
        log.warning("UniSender send failed: code=%s retryable=%s: %s", code, retryable, text)
        return SendResult(ok=False, message_id=message_id, error_code=code, error=text,
                          retryable=retryable)

    def _scrub(self, text: str) -> str:
        text = text.replace(self._api_key, "***")
        return _API_KEY_PARAM.sub(r"\1***", text)[:ERROR_TEXT_MAX]


def _describe(code: str, provider_text: str) -> str:
    label = _DESCRIPTIONS.get(code, "ошибка")
    return f"{label} ({code}): {provider_text}" if provider_text else f"{label} ({code})"


def _json_object(resp: requests.Response) -> dict[str, Any] | None:
    # parse_float=str: a dotted sms_id (2376678.79092020303) must survive as text (§1.3).
    try:
        body = json.loads(resp.content, parse_float=str)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# ---------------------------------------------------------------- Unisender Go (e-mail)

def _failed_reason(failed: Any, email: str) -> str | None:
    """The reason `failed_emails` gives for `email`, if it lists it (§3.4, §3.5)."""
    wanted = email.strip().lower()
    if isinstance(failed, dict):
        for address, reason in failed.items():
            if str(address).strip().lower() == wanted:
                return str(reason or "unknown")
    elif isinstance(failed, list):  # not documented; a bare list of addresses is tolerated
        if any(str(address).strip().lower() == wanted for address in failed):
            return "unknown"
    return None


def _lists(emails: Any, email: str) -> bool:
    wanted = email.strip().lower()
    return isinstance(emails, list) and any(str(e).strip().lower() == wanted for e in emails)


def go_idempotence_key(key: str) -> str:
    """A key Go will accept: short safe keys pass through, others become a stable hash.

    Deterministic, so an outbox retry sends the same key and Go can drop the replay.
    """
    if not key:
        raise ValueError("idempotence_key is empty")
    if _SAFE_IDEMPOTENCE_KEY.fullmatch(key):
        return key
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _go_substitutions(to_name: str, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    subs = dict(extra or {})
    bad = [name for name in subs if not _SUBSTITUTION_NAME.fullmatch(str(name))]
    if bad:
        raise ValueError(f"invalid Unisender Go substitution names: {bad}")
    if to_name.strip():
        subs["to_name"] = to_name.strip()[:GO_TO_NAME_MAX]  # sets the To: display name
    return subs


def _go_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    if metadata and len(metadata) > GO_METADATA_KEYS_MAX:
        raise ValueError(f"Unisender Go allows {GO_METADATA_KEYS_MAX} metadata keys")
    return {str(k): str(v) for k, v in (metadata or {}).items()}  # Go wants a string map


class GoClient(_Client):
    """Unisender Go transactional `email/send.json` (§3)."""

    def __init__(self, api_key: str, *, host: str = "go1", base_url: str | None = None,
                 session: requests.Session | None = None,
                 timeout_s: float = TIMEOUT_S_DEFAULT) -> None:
        # The account lives in one data centre; the wrong one answers code 114 (§3.1).
        if base_url is None and host not in GO_HOSTS:
            raise ValueError(f"Unisender Go host must be one of {GO_HOSTS}, got {host!r}")
        root = base_url or f"https://{host}.unisender.ru/ru/transactional/api/v1"
        super().__init__(api_key, url=f"{root.rstrip('/')}/email/send.json",
                         session=session, timeout_s=timeout_s)

    def send_email(self, *, to_email: str, to_name: str, subject: str, html: str,
                   from_email: str, from_name: str, idempotence_key: str,
                   substitutions: Mapping[str, Any] | None = None,
                   metadata: Mapping[str, Any] | None = None,
                   plaintext: str | None = None) -> SendResult:
        """Send one e-mail to one recipient; ok only if Go accepted that recipient."""
        payload = self.build_payload(
            to_email=to_email, to_name=to_name, subject=subject, html=html,
            from_email=from_email, from_name=from_name, idempotence_key=idempotence_key,
            substitutions=substitutions, metadata=metadata, plaintext=plaintext)
        headers = {"X-API-KEY": self._api_key, "Accept": "application/json"}
        resp = self._post(self._url, json=payload, headers=headers)
        if isinstance(resp, SendResult):
            return resp
        body = _json_object(resp) or {}
        if resp.status_code == 200 and body.get("status") == "success":
            return self._recipient_result(body, to_email)
        return self._error_result(resp, body, to_email)

    @staticmethod
    def build_payload(*, to_email: str, to_name: str, subject: str, html: str,
                      from_email: str, from_name: str, idempotence_key: str,
                      substitutions: Mapping[str, Any] | None = None,
                      metadata: Mapping[str, Any] | None = None,
                      plaintext: str | None = None) -> dict[str, Any]:
        """The JSON body of §3.3 / §6.3; the key travels in the header, not here."""
        recipient: dict[str, Any] = {
            "email": to_email, "substitutions": _go_substitutions(to_name, substitutions)}
        if metadata:
            recipient["metadata"] = _go_metadata(metadata)
        body = {"html": html} if plaintext is None else {"html": html, "plaintext": plaintext}
        message = {
            "recipients": [recipient], "subject": subject, "body": body,
            "from_email": from_email, "from_name": from_name,
            "global_language": "ru",  # language of the unsubscribe block and page
            # The server defaults are UNCONFIRMED (§3.3); notices need neither a tracking
            # pixel nor rewritten links.
            "track_read": 0, "track_links": 0,
        }
        # Top level, next to "message": the doc's recommendation; placement UNCONFIRMED (§3.7).
        return {"idempotence_key": go_idempotence_key(idempotence_key), "message": message}

    def _recipient_result(self, body: dict[str, Any], to_email: str) -> SendResult:
        job_id = str(body["job_id"]) if body.get("job_id") else None
        reason = _failed_reason(body.get("failed_emails"), to_email)
        # A 'duplicate' is listed in both maps: its first copy is sent (§3.4).
        if reason is None or _lists(body.get("emails"), to_email):
            return SendResult(ok=True, message_id=job_id)
        return self._fail(reason, "Unisender Go отклонил адрес: " + _describe(reason, to_email),
                          message_id=job_id)

    def _error_result(self, resp: requests.Response, body: dict[str, Any],
                      to_email: str) -> SendResult:
        status = resp.status_code
        api_code = body.get("code")
        go_code = f"go_{api_code}" if api_code not in (None, "") else None
        reason = _failed_reason(body.get("failed_emails"), to_email)
        code = reason or go_code or (f"http_{status}" if status >= 400 else "bad_response")
        # The recipient's own reason beats the envelope: 204 can hide a temporary block.
        retryable = _is_transient(reason) if reason else _is_transient(go_code, status)
        text = str(body.get("message") or resp.reason or "")
        return self._fail(code, f"Unisender Go, HTTP {status}: {_describe(code, text)}",
                          retryable=retryable)


# ---------------------------------------------------------------- classic API (SMS)

def _sms_entry(result: Any, phone: str) -> dict[str, Any] | None:
    """The result for our number: an object for one phone, a list for several (§1.6)."""
    if isinstance(result, dict):
        return result
    if not isinstance(result, list):
        return None
    entries = [e for e in result if isinstance(e, dict)]
    for entry in entries:
        if re.sub(r"\D", "", str(entry.get("phone", ""))) == phone:
            return entry
    return entries[0] if len(entries) == 1 else None


def _entry_error(entry: dict[str, Any]) -> tuple[str, str] | None:
    """A per-number error inside `result`: sendEmail's `errors[]` form or a flat one."""
    errors = entry.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
        return str(first.get("code") or "unspecified"), str(first.get("message") or "")
    if entry.get("error"):
        return str(entry.get("code") or "unspecified"), str(entry["error"])
    return None


class ClassicClient(_Client):
    """Classic UniSender API, used only for `sendSms` (§1, §2).

    `base_url` is the root before `/{lang}/api/` (default https://api.unisender.com).
    """

    def __init__(self, api_key: str, *, base_url: str | None = None, lang: str = "ru",
                 session: requests.Session | None = None,
                 timeout_s: float = TIMEOUT_S_DEFAULT) -> None:
        if lang not in CLASSIC_LANGS:
            raise ValueError(f"UniSender API language must be one of {CLASSIC_LANGS}")
        root = (base_url or CLASSIC_BASE_URL).rstrip("/")
        super().__init__(api_key, url=f"{root}/{lang}/api", session=session,
                         timeout_s=timeout_s)

    def send_sms(self, *, phone_digits: str, sender: str, text: str) -> SendResult:
        """Send one SMS to one number (one per call keeps the result an object, §5)."""
        invalid = self._invalid_sms(phone_digits, text)
        if invalid:
            return invalid
        # POST form with the key in the body, only `format` in the query: keeps the key out
        # of proxy logs and avoids mixing GET and POST arguments (§1.2).
        resp = self._post(
            f"{self._url}/sendSms", params={"format": "json"},
            data={"api_key": self._api_key, "phone": phone_digits, "sender": sender,
                  "text": text},
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        if isinstance(resp, SendResult):
            return resp
        return self._sms_result(resp, phone_digits)

    def _invalid_sms(self, phone_digits: str, text: str) -> SendResult | None:
        # Checked here so a bad record fails at once instead of costing an API call.
        if not _PHONE_DIGITS.fullmatch(phone_digits or ""):
            return self._fail("dest_invalid", _describe("dest_invalid", "нужны 10-15 цифр"))
        if not text or len(text) > SMS_TEXT_MAX:
            return self._fail("invalid_arg",
                              _describe("invalid_arg", f"текст SMS: 1-{SMS_TEXT_MAX} символов"))
        return None

    def _sms_result(self, resp: requests.Response, phone: str) -> SendResult:
        status = resp.status_code
        body = _json_object(resp)
        if body is None:
            code = f"http_{status}" if status >= 400 else "bad_response"
            return self._fail(code, f"UniSender, HTTP {status}: ответ не в формате JSON")
        # Errors live in the body, usually with HTTP 200 (§1.3).
        if body.get("error") or status != 200:
            code = str(body.get("code") or (f"http_{status}" if status >= 400 else "unspecified"))
            text = unescape(str(body.get("error") or resp.reason or ""))
            return self._fail(code, f"UniSender: {_describe(code, text)}",
                              retryable=_is_transient(code, status))
        return self._sms_entry_result(body, phone)

    def _sms_entry_result(self, body: dict[str, Any], phone: str) -> SendResult:
        entry = _sms_entry(body.get("result"), phone)
        if entry is None:
            return self._fail("bad_response", "UniSender: в ответе нет результата для номера")
        error = _entry_error(entry)
        if error:
            code, text = error
            return self._fail(code, f"UniSender: {_describe(code, unescape(text))}")
        if entry.get("sms_id") in (None, ""):
            return self._fail("bad_response", "UniSender: в ответе нет sms_id")
        for warning in body.get("warnings") or []:
            log.info("UniSender sendSms warning: %s", self._scrub(str(warning)))
        return SendResult(ok=True, message_id=str(entry["sms_id"]))
