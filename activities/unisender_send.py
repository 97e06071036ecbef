"""loyalty_unisender_send: an e-mail or SMS to the client from a template.

The message is recorded first (one per event_token), then sent; the run answers once
the send has an outcome. A transient provider failure leaves the message to the
delivery retries and the run waits for them (it is rescheduled, not failed).
"""
from __future__ import annotations

from activities import lookup
from activities.forms import FormError
from activities.runtime import Reply, RunContext
from api.ledger.phones import PhoneError, normalize
from api.models import Notification
from notifications import delivery, notices
from notifications.context import card_context
from notifications.templates import TemplateError, render_html, render_text

CHANNELS = ("email", "sms")


class StillSending(Exception):
    """The provider asked us to try later: the run waits like on a Bitrix24 hiccup."""


def read(ctx: RunContext) -> dict:
    row = _record(ctx)
    if row.status == "pending":
        delivery.deliver(row.id, ctx.settings.config, now=ctx.now, session=ctx.session)
        row = Notification.get_by_id(row.id)
    if row.status in ("pending", "sending"):
        raise StillSending(row.error or "UniSender попросил повторить позже")
    return {"row": row}


def write(ctx: RunContext, data: dict) -> Reply:
    row = data["row"]
    if row.status == "sent":
        return Reply.ok(f"{_label(row)} отправлено: {row.recipient}",
                        MessageId=row.provider_message_id or "")
    return Reply.error(f"{_label(row)} не отправлено: {row.error}", MessageId="")


def _record(ctx: RunContext) -> Notification:
    channel = (ctx.text("Channel") or "email").lower()
    if channel not in CHANNELS:
        raise FormError("Channel", "Канал должен быть email или sms")
    contact = lookup.contact_id(ctx)
    card = lookup.find_card(ctx, contact) if (contact or ctx.text("CardNumber")) else None
    recipient = _recipient(ctx, channel, card, contact)
    context = card_context(card)
    try:
        body = (render_html if channel == "email" else render_text)(ctx.text("Body") or "", context)
        subject = render_text(ctx.text("Subject") or "", context) if channel == "email" else None
    except TemplateError as exc:
        raise FormError("Body", exc.message) from None
    if not body.strip():
        raise FormError("Body", "Пустой текст сообщения")
    if channel == "email" and not subject:
        raise FormError("Subject", "Для письма нужна тема")
    return notices.insert(ctx.portal, card, f"{ctx.key}:{channel}", channel, "bp", recipient,
                          subject, body)


def _recipient(ctx: RunContext, channel: str, card, contact) -> str:
    given = ctx.text("Recipient")
    if channel == "sms":
        value = given or (card.number if card else None)
        if not value:
            raise FormError("Recipient", "Не указан телефон получателя, и у клиента нет карты")
        try:
            return normalize(value)
        except PhoneError as exc:
            raise FormError("Recipient", str(exc)) from None
    value = given or (card.email if card else None)
    if not value or "@" not in value:
        raise FormError("Recipient", "Не указан e-mail получателя, и у клиента его нет")
    return value


def _label(row: Notification) -> str:
    return "Письмо" if row.channel == "email" else "SMS"
