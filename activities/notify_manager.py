"""loyalty_notify_manager: a notification from the app (or a chat message) to a Bitrix24 user.

Sent while reading, because its id is a return value. The message is recorded first;
a rerun after a crash finds it sent and reuses its id. A resent notification carries the
same TAG, which replaces the first rather than adding a second; a chat message has no TAG,
so it is claimed before sending and never sent twice (notices.claim_untagged).
"""
from __future__ import annotations

from activities import contacts, lookup
from activities.b24client import B24Error
from activities.forms import FormError
from activities.runtime import Reply, RunContext
from notifications import notices
from notifications import settings as notice_settings
from notifications.context import card_context
from notifications.templates import TemplateError, render_text


def read(ctx: RunContext) -> dict:
    message = ctx.text("Message")
    if not message:
        raise FormError("Message", "Пустое сообщение")
    user, contact, row = ctx.user("User"), lookup.contact_id(ctx), None
    if user is None:
        user, contact, row = _responsible(ctx, contact)
    card = lookup.find_card(ctx, contact) if contact else None
    try:
        text = render_text(message, card_context(card) if card else _contact_context(ctx, contact, row))
    except TemplateError as exc:
        raise FormError("Message", exc.message) from None
    settings = notice_settings.load(ctx.portal)
    row = notices.insert(ctx.portal, card, f"{ctx.key}:chat", "chat", "bp", str(user), None, text)
    if row.status in ("pending", "sending"):
        row = _send(ctx, row, settings, user)
    if row.status == "unknown":
        raise FormError("User", row.error)
    return {"message_id": row.provider_message_id or "", "user": user}


def _send(ctx: RunContext, row, settings: dict, user: int):
    """Send once: a message without TAG whose earlier send went unanswered is not repeated."""
    key, call = notices.chat_call(type(row).get_by_id(row.id), settings) or (None, None)
    calls, held = notices.claim_untagged({key: call} if key else {})
    if key is None or held:
        return type(row).get_by_id(row.id)
    method, params = calls[key]
    try:
        result = ctx.client.call(method, params).get("result")
    except B24Error as exc:
        if notices.not_run(exc):
            notices.release_untagged([key])
        raise
    if not result:
        notices.release_untagged([key])
        raise FormError("User", f"Битрикс24 не принял сообщение для пользователя {user}")
    notices.mark_chat(row.id, result, None)
    return type(row).get_by_id(row.id)


def write(ctx: RunContext, data: dict) -> Reply:
    return Reply.ok(f"Уведомление отправлено пользователю {data['user']}",
                    MessageId=data["message_id"])


def _responsible(ctx: RunContext, contact: int | None) -> tuple[int, int | None, dict | None]:
    """The document's responsible; also returns the contact row when that is what was read."""
    if contact:
        row = ctx.client.call("crm.contact.get", {"id": contact})["result"]
        found = row
    elif lookup.deal_id(ctx):
        row, found = lookup.read_deal(ctx, lookup.deal_id(ctx)), None
        contact = lookup.contact_of_deal(row)
    else:
        raise FormError("User", "Не указан получатель и нет ответственного в документе")
    if not row.get("ASSIGNED_BY_ID"):
        raise FormError("User", "У документа нет ответственного")
    return int(row["ASSIGNED_BY_ID"]), contact, found


def _contact_context(ctx: RunContext, contact: int | None, row: dict | None) -> dict:
    """No card yet: the placeholders come from the contact itself."""
    if not contact:
        return {}
    row = row or ctx.client.call("crm.contact.get", {"id": contact})["result"]
    data = contacts.card_data(row, None)
    return {"first_name": data["first_name"] or "", "last_name": data["last_name"] or "",
            "phone": data["phone"] or "", "email": data["email"] or ""}
