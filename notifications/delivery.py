"""Delivers e-mail (Unisender Go) and SMS (UniSender classic) notifications.

No message goes out twice for one cause. A row is marked `sending` before the HTTP
call; a worker that dies mid-call leaves it so. On recovery an e-mail goes back to
pending (Go drops a repeat with the same idempotence_key); an SMS becomes `unknown`
for a person to check, since the classic API has no idempotency and a resend could
reach the client twice.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from api.clock import utcnow
from api.models import Notification, Portal
from notifications import settings as settings_mod
from notifications.unisender import ClassicClient, GoClient, SendResult, go_idempotence_key

log = logging.getLogger(__name__)

ATTEMPTS_MAX = 10
CLAIM_S = 120
CHANNELS = ("email", "sms")
# Short: a slow provider must not hold its lane for long (the clients default to 20 s).
SEND_TIMEOUT_S = 10
SECRET_TEMPLATES = ("login_code_sms",)  # their text is blanked once it has gone (or may have)
CODE_HIDDEN = "Код входа скрыт после отправки"


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 6 * 3600))


def deliver_due(config, *, now: datetime | None = None, session=None, limit: int = 50,
                portal=None) -> int:
    now = now or utcnow()
    recover_stuck(now)
    due = (Notification.select(Notification.id)
           .where((Notification.status == "pending") & Notification.channel.in_(CHANNELS)
                  & (Notification.next_attempt_at <= now))
           .order_by(Notification.id).limit(limit))
    if portal is not None:
        due = due.where(Notification.portal == portal)
    return sum(1 for row in list(due) if deliver(row.id, config, now=now, session=session))


def recover_stuck(now: datetime) -> None:
    stuck = (Notification.status == "sending") & (Notification.claimed_until < now)
    # A send cut off counts as an attempt: at the limit it is a dead letter, not pending again.
    Notification.update(status="failed", claimed_until=None,
                        error="Отправка прерывалась при каждой попытке").where(
        stuck & (Notification.channel == "email")
        & (Notification.attempts >= ATTEMPTS_MAX)).execute()
    Notification.update(status="pending", claimed_until=None).where(
        stuck & (Notification.channel == "email")).execute()
    Notification.update(body=CODE_HIDDEN).where(
        stuck & (Notification.channel == "sms") & Notification.template.in_(SECRET_TEMPLATES)
    ).execute()
    Notification.update(status="unknown", error="Отправка прервалась; SMS не отправлено повторно, "
                                                "чтобы клиент не получил его дважды").where(
        stuck & (Notification.channel == "sms")).execute()


def deliver(notification_id: int, config, *, now: datetime, session=None) -> bool:
    """Claim and send one row; False when another worker has it."""
    claimed = Notification.update(status="sending", attempts=Notification.attempts + 1,
                                  claimed_until=now + timedelta(seconds=CLAIM_S)).where(
        (Notification.id == notification_id) & (Notification.status == "pending")).execute()
    if claimed != 1:
        return False
    row = Notification.get_by_id(notification_id)
    try:
        settings = settings_mod.load(Portal.get_by_id(row.portal_id))
        result = _send(row, settings, config, session)
    except ValueError as exc:  # settings the client refuses: a clear failure, not a stuck row
        result = SendResult(ok=False, error_code="invalid_settings",
                            error=f"Настройки UniSender неверны: {exc}", retryable=False)
    except Exception as exc:  # a bug: counted like any failure, never left in `sending`
        log.exception("notification %s: sending crashed", row.id)
        result = SendResult(ok=False, error_code="internal_error", retryable=True,
                            error=f"Внутренняя ошибка: {type(exc).__name__}")
    _record(row, result, now)
    return True


def _send(row: Notification, settings: dict, config, session) -> SendResult:
    missing = _missing_setting(row.channel, settings)
    if missing:
        return SendResult(ok=False, error_code="not_configured",
                          error=f"UniSender не настроен: {missing}", retryable=False)
    if row.channel == "email":
        client = GoClient(settings["go_api_key"], host=settings["go_host"],
                          base_url=config.get("UNISENDER_GO_URL"), session=session,
                          timeout_s=SEND_TIMEOUT_S)
        return client.send_email(to_email=row.recipient, to_name=_name(row), subject=row.subject or "",
                                 html=row.body, from_email=settings["sender_email"],
                                 from_name=settings["sender_name"],
                                 idempotence_key=go_idempotence_key(f"n{row.portal_id}:{row.key}"))
    client = ClassicClient(settings["unisender_api_key"], base_url=config.get("UNISENDER_API_URL"),
                           session=session, timeout_s=SEND_TIMEOUT_S)
    return client.send_sms(phone_digits=row.recipient, sender=settings["sms_sender"], text=row.body)


def _missing_setting(channel: str, settings: dict) -> str | None:
    needed = {"email": ("go_api_key", "sender_email"), "sms": ("unisender_api_key", "sms_sender")}
    names = {"go_api_key": "ключ Unisender Go", "sender_email": "e-mail отправителя",
             "unisender_api_key": "ключ UniSender", "sms_sender": "имя отправителя SMS"}
    absent = [names[k] for k in needed[channel] if not settings.get(k)]
    return ", ".join(absent) or None


def _name(row: Notification) -> str:
    card = row.card
    return " ".join(p for p in (card.first_name, card.last_name) if p) if card else ""


def _record(row: Notification, result: SendResult, now: datetime) -> None:
    if result.ok:
        fields = {"status": "sent", "sent_at": now, "provider_message_id": result.message_id,
                  "error": None}
    elif row.channel == "sms" and result.error_code in ("timeout", "internal_error"):
        # The request may have reached UniSender: a resend could deliver it twice.
        fields = {"status": "unknown", "error": "Нет ответа от UniSender; SMS могло уйти, "
                                                "повторно не отправляется"}
    elif result.retryable and row.attempts < ATTEMPTS_MAX:
        fields = {"status": "pending", "next_attempt_at": now + backoff(row.attempts),
                  "error": f"{result.error_code}: {result.error}"}
    else:
        fields = {"status": "failed", "error": f"{result.error_code}: {result.error}"}
    fields["claimed_until"] = None
    if row.template in SECRET_TEMPLATES and fields["status"] != "pending":
        fields["body"] = CODE_HIDDEN  # the code lives only as a hash
    Notification.update(**fields).where(Notification.id == row.id).execute()
    if not result.ok:
        log.warning("notification %s (%s): %s", row.id, row.channel, fields["error"])


def retry(notification_id: int, now: datetime | None = None) -> bool:
    """A person asked to try a failed message again."""
    return Notification.update(status="pending", next_attempt_at=now or utcnow(), attempts=0,
                               error=None).where(
        (Notification.id == notification_id) & (Notification.status == "failed")).execute() == 1
