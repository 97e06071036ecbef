"""Recording notices: one Notification row per message, rendered from the portal's template.

E-mail and SMS rows are delivered by notifications.delivery; a chat row becomes a
Bitrix24 call that the caller puts in its outbox batch (key `notice_<id>`), and
scheduler.dispatch marks it sent. The row's key is unique per portal, so queueing the
same cause twice records (and sends) one message.
"""
from __future__ import annotations

from api.clock import utcnow
from api.models import Card, Notification, Portal
from notifications import settings as settings_mod
from notifications.templates import TemplateError, render_notice

TAG_PREFIX = "loyalty"


def record(portal: Portal, card: Card | None, name: str, recipient: str, context: dict,
           key: str, settings: dict | None = None, now=None) -> Notification | None:
    """Render and record one message; a template error is recorded as the failure it is."""
    settings = settings or settings_mod.load(portal)
    template = settings_mod.template(settings, name)
    try:
        rendered = render_notice(template, context)
    except TemplateError as exc:
        return insert(portal, card, key, template.channel, name, recipient, None, "",
                      status="failed", error=f"Ошибка шаблона {name}: {exc.message}",
                      created_at=now or utcnow())
    return insert(portal, card, key, template.channel, name, recipient, rendered.subject,
                  rendered.body, created_at=now or utcnow())


def insert(portal: Portal, card: Card | None, key: str, channel: str, template: str,
           recipient: str, subject: str | None, body: str, **fields) -> Notification:
    """Record a rendered message once per key; the row for the key is returned either way."""
    row = Notification(portal=portal, card=card, key=key[:220], channel=channel,
                       template=template, recipient=str(recipient)[:254], subject=subject,
                       body=body, **fields)
    made = list(Notification.insert(**{f: getattr(row, f) for f in row.__data__})
                .on_conflict_ignore().returning(Notification.id).tuples().execute())
    if made:  # RETURNING: a new row costs one statement, not an insert and a read
        row.id = made[0][0]
        return row
    return Notification.get((Notification.portal == portal) & (Notification.key == key[:220]))


def chat_call(row: Notification, settings: dict) -> tuple[str, tuple[str, dict]] | None:
    """The Bitrix24 call that delivers a chat row (None if its template failed)."""
    if row is None or row.status != "pending":
        return None
    if settings.get("chat_method") == "message":
        call = ("im.message.add", {"DIALOG_ID": row.recipient, "MESSAGE": row.body})
    else:
        # The same TAG replaces an earlier notification: a redelivery shows once.
        call = ("im.notify.personal.add", {"USER_ID": int(row.recipient), "MESSAGE": row.body,
                                           "TAG": f"{TAG_PREFIX}:n{row.id}"})
    return f"notice_{row.id}", call


def mark_chat(notification_id: int, result, error: str | None) -> None:
    """Called by the outbox dispatcher once Bitrix24 answered for a chat row."""
    if error:
        Notification.update(status="failed", error=error[:1000]).where(
            Notification.id == notification_id).execute()
    else:
        Notification.update(status="sent", sent_at=utcnow(),
                            provider_message_id=str(result)[:100] if result not in (None, True) else None
                            ).where(Notification.id == notification_id).execute()
