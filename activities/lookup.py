"""Finding the contact, deal and card an activity run is about."""
from __future__ import annotations

from activities.forms import FormError
from activities.runtime import RunContext
from api.ledger import cards
from api.ledger.errors import CardNotFound
from api.models import Card


def deal_id(ctx: RunContext) -> int | None:
    return ctx.integer("DealId") or ctx.document_id_of("DEAL")


def contact_id(ctx: RunContext) -> int | None:
    """Explicit ContactId, else the document's contact; a deal document needs a read."""
    return ctx.integer("ContactId") or ctx.document_id_of("CONTACT")


def read_deal(ctx: RunContext, deal: int) -> dict:
    deal_row = ctx.client.call("crm.deal.get", {"id": deal})["result"]
    if not isinstance(deal_row, dict):
        raise FormError("DealId", f"Сделка {deal} не найдена")
    return deal_row


def contact_of_deal(deal_row: dict) -> int | None:
    value = deal_row.get("CONTACT_ID")
    return int(value) if value not in (None, "", "0", 0) else None


def needs_deal(ctx: RunContext) -> bool:
    """No card key of its own: the card is the deal's contact's."""
    return not (ctx.text("CardNumber") or ctx.text("Phone") or contact_id(ctx)) and bool(deal_id(ctx))


def find_card(ctx: RunContext, contact: int | None) -> Card | None:
    """By card number, phone or contact, in that order; None when there is no card."""
    try:
        if ctx.text("CardNumber") or ctx.text("Phone"):
            value = ctx.text("CardNumber") or ctx.text("Phone")
            return cards.find_by_phone(ctx.portal, value)
        if contact:
            return cards.find_by_contact(ctx.portal, contact)
    except CardNotFound:
        return None
    raise FormError("ContactId", "Не указан клиент: нужен контакт, телефон или номер карты")


def card_contact(ctx: RunContext) -> dict:
    """The contact whose card a run is about; a deal document costs one read."""
    if needs_deal(ctx):
        return {"contact": contact_of_deal(read_deal(ctx, deal_id(ctx)))}
    return {"contact": contact_id(ctx)}
