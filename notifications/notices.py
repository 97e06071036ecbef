"""Recording notices: one Notification row per message, rendered from the portal's template.

E-mail and SMS rows are delivered by notifications.delivery; a chat row becomes a
Bitrix24 call that the caller puts in its outbox batch (key `notice_<id>`), and
background.dispatch marks it sent. The row's key is unique per portal, so queueing the
same cause twice records (and sends) one message.
"""
from __future__ import annotations

from api.clock import utcnow
from api.data.rows import new_row
from api.ledger import sql
from api.models import Card, Notification, Portal
from notifications import settings as settings_mod
from notifications.templates import TemplateError, render_notice

TAG_PREFIX = "loyalty"


def record(portal: Portal, card: Card | None, name: str, recipient: str, context: dict,
           key: str, settings: dict | None = None, now=None, *,
           answer: bool = True) -> Notification | None:
    """Render and record one message; a template error is recorded as the failure it is.
    With answer=False the row is not read back (its id stays None; see `insert`)."""
    settings = settings or settings_mod.load(portal)
    template = settings_mod.template(settings, name)
    try:
        rendered = render_notice(template, context)
    except TemplateError as exc:
        return insert(portal, card, key, template.channel, name, recipient, None, "",
                      status="failed", error=f"Ошибка шаблона {name}: {exc.message}",
                      created_at=now or utcnow(), answer=answer)
    return insert(portal, card, key, template.channel, name, recipient, rendered.subject,
                  rendered.body, created_at=now or utcnow(), answer=answer)


def insert(portal: Portal, card: Card | None, key: str, channel: str, template: str,
           recipient: str, subject: str | None, body: str, *, answer: bool = True,
           **fields) -> Notification:
    """Record a rendered message once per key; the row for the key is returned either way.
    With answer=False (a caller that needs neither id nor the earlier row) the INSERT is
    not waited for: in a transaction it goes out with the next statement."""
    row = new_row(Notification, {"portal": portal, "card": card}, {
        "key": key[:220], "channel": channel, "template": template,
        "recipient": str(recipient)[:254], "subject": subject, "body": body, **fields})
    if not answer:
        sql.insert_row(row, unique=("portal", "key"), answer=False)
        return row
    made = sql.insert_row(row, unique=("portal", "key"))
    if made is not None:  # RETURNING: a new row costs one statement, not an insert and a read
        row.id = made
        return row
    return Notification.get((Notification.portal == portal) & (Notification.key == key[:220]))


CHAT_METHODS = {  # the chat_method setting -> the Bitrix24 method it sends with
    "notify": "im.notify.system.add",  # from the app itself (protocol §7.4): the default
    "personal": "im.notify.personal.add",  # shown as written by the token's user (the admin)
    "message": "im.message.add",  # a private chat message from the token's user: no TAG
}
UNTAGGED = ("im.message.add",)
UNKNOWN_CHAT = ("Не известно, дошло ли сообщение в чат: ответ Битрикс24 не получен, а повтор "
                "мог бы отправить его дважды (у сообщений чата нет TAG). Проверьте чат.")


def chat_call(row: Notification, settings: dict) -> tuple[str, tuple[str, dict]] | None:
    """The Bitrix24 call that delivers a chat row (None if its template failed or it went).
    A `sending` row gets its call too: claim_untagged then decides it may not go again."""
    if row is None or row.status not in ("pending", "sending"):
        return None
    method = CHAT_METHODS.get(settings.get("chat_method"), CHAT_METHODS["notify"])
    if method in UNTAGGED:
        call = (method, {"DIALOG_ID": row.recipient, "MESSAGE": row.body})
    else:
        # The same TAG replaces an earlier notification: a redelivery shows once.
        call = (method, {"USER_ID": int(row.recipient), "MESSAGE": row.body,
                         "TAG": f"{TAG_PREFIX}:n{row.id}"})
    return f"notice_{row.id}", call


def claim_untagged(calls: dict) -> tuple[dict, list[str]]:
    """Before a batch goes out: each untagged chat message is claimed (pending → sending).

    A message still `sending` was sent by an attempt whose answer never came (a timeout, a
    crash): it may have arrived, and a chat message has no TAG to absorb a second copy, so it
    is not sent again but marked `unknown`. Returns the calls to send and the keys held back.
    """
    held = []
    for key, (method, _) in list(calls.items()):
        row_id = _notice_id(key)
        if method not in UNTAGGED or row_id is None:
            continue
        claimed = Notification.update(status="sending").where(
            (Notification.id == row_id) & (Notification.status == "pending")).execute()
        if not claimed:
            Notification.update(status="unknown", error=UNKNOWN_CHAT).where(
                (Notification.id == row_id) & (Notification.status == "sending")).execute()
            held.append(key)
    return {k: v for k, v in calls.items() if k not in held}, held


def release_untagged(keys) -> None:
    """The portal answered without running these (refused the request, or a sub-command's
    rate limit): they may go again."""
    ids = [i for i in (_notice_id(k) for k in keys) if i is not None]
    if ids:
        Notification.update(status="pending").where(
            Notification.id.in_(ids) & (Notification.status == "sending")).execute()


def not_run(exc) -> bool:
    """Did the portal refuse the whole request before running any of it? An answer below
    500, or the rate limit's 503; a timeout or another 5xx may have run it."""
    status = getattr(exc, "status", None)
    return status is not None and (status < 500 or exc.code == "QUERY_LIMIT_EXCEEDED")


def _notice_id(key: str) -> int | None:
    return int(key[7:]) if key.startswith("notice_") and key[7:].isdigit() else None


def mark_chat(notification_id: int, result, error: str | None) -> None:
    """Called by the outbox dispatcher once Bitrix24 answered for a chat row."""
    if error:
        Notification.update(status="failed", error=error[:1000]).where(
            Notification.id == notification_id).execute()
    else:
        Notification.update(status="sent", sent_at=utcnow(),
                            provider_message_id=str(result)[:100] if result not in (None, True) else None
                            ).where(Notification.id == notification_id).execute()
