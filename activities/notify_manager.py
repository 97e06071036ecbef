"""loyalty_notify_manager: a personal notification to a Bitrix24 user.

Sent while reading (its id is a return value); the TAG makes a resend after a crash
replace the first notification instead of adding a second.
"""
from __future__ import annotations

from activities import lookup
from activities.forms import FormError
from activities.notices import TAG_PREFIX
from activities.runtime import Reply, RunContext
from notifications.context import card_context
from notifications.templates import TemplateError, render_text


def read(ctx: RunContext) -> dict:
    message = ctx.text("Message")
    if not message:
        raise FormError("Message", "Пустое сообщение")
    user, contact = ctx.user("User"), lookup.contact_id(ctx)
    if user is None:
        user, contact = _responsible(ctx, contact)
    try:
        text = render_text(message, _context(ctx, contact))
    except TemplateError as exc:
        raise FormError("Message", exc.message) from None
    sent = ctx.client.call("im.notify.personal.add", {
        "USER_ID": user, "MESSAGE": text, "TAG": f"{TAG_PREFIX}:bp:{ctx.run.token_hash[:40]}"})
    if not sent.get("result"):
        raise FormError("User", f"Битрикс24 не принял уведомление для пользователя {user}")
    return {"message_id": str(sent["result"]), "user": user}


def write(ctx: RunContext, data: dict) -> Reply:
    return Reply.ok(f"Уведомление отправлено пользователю {data['user']}",
                    MessageId=data["message_id"])


def _responsible(ctx: RunContext, contact: int | None) -> tuple[int, int | None]:
    if contact:
        row = ctx.client.call("crm.contact.get", {"id": contact})["result"]
    elif lookup.deal_id(ctx):
        row = lookup.read_deal(ctx, lookup.deal_id(ctx))
        contact = lookup.contact_of_deal(row)
    else:
        raise FormError("User", "Не указан получатель и нет ответственного в документе")
    if not row.get("ASSIGNED_BY_ID"):
        raise FormError("User", "У документа нет ответственного")
    return int(row["ASSIGNED_BY_ID"]), contact


def _context(ctx: RunContext, contact: int | None) -> dict:
    return card_context(lookup.find_card(ctx, contact) if contact else None)
