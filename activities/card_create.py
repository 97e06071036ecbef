"""loyalty_card_create: issue a card from the contact's data; say what is missing."""
from __future__ import annotations

from activities import contacts, lookup
from activities.forms import FormError, to_date
from activities.runtime import Reply, RunContext
from api.ledger import cards, rules
from api.ledger.errors import CardExists, InvalidInput, MissingFields
from api.ledger.money import format_kop
from notifications import notices
from notifications import settings as notice_settings

FIELD_NAMES_RU = {"last_name": "фамилия", "first_name": "имя", "middle_name": "отчество",
                  "phone": "мобильный телефон", "client_category": "категория клиента",
                  "email": "e-mail", "birthdate": "дата рождения"}
OVERRIDES = {"LastName": "last_name", "FirstName": "first_name", "Phone": "phone",
             "ClientCategory": "client_category", "Email": "email"}


def read(ctx: RunContext) -> dict:
    """The contact, in one request even when only the deal is known (a batch reference)."""
    contact = lookup.contact_id(ctx)
    if contact:
        row = ctx.client.call("crm.contact.get", {"id": contact})["result"]
    elif lookup.deal_id(ctx):
        batch = ctx.client.batch({
            "deal": ("crm.deal.get", {"id": lookup.deal_id(ctx)}),
            "contact": ("crm.contact.get", {"id": "$result[deal][CONTACT_ID]"})})
        row = batch.result("contact")
    else:
        raise FormError("ContactId", "Не указан контакт")
    if not isinstance(row, dict) or "ID" not in row:
        raise FormError("ContactId", "Контакт не найден")
    return {"contact": row}


def write(ctx: RunContext, data: dict) -> Reply:
    program = rules.load(ctx.portal)
    fields = contacts.card_data(data["contact"], program.client_category_field)
    fields.update(_overrides(ctx))
    try:
        card, created = cards.create_card(ctx.portal, fields, actor=ctx.actor, now=ctx.now)
    except MissingFields as exc:
        return _refused(ctx, fields, [FIELD_NAMES_RU[n] for n in exc.names])
    except InvalidInput as exc:
        return _refused(ctx, fields, [f"{FIELD_NAMES_RU.get(k, k)} ({v})" for k, v in exc.fields.items()])
    except CardExists as exc:
        return Reply.error(exc.message, Created="N")
    reply = Reply.ok(f"Карта {card.number} {'выпущена' if created else 'уже была у контакта'}",
                     CardNumber=card.number, Created="Y" if created else "N",
                     Balance=format_kop(card.balance_kop), Tier=card.tier)
    update = contacts.fields_update(card)
    if update:
        reply.calls["contact_fields"] = update
    return reply


def _overrides(ctx: RunContext) -> dict:
    values = {field: ctx.text(prop) for prop, field in OVERRIDES.items() if ctx.text(prop)}
    if ctx.text("Birthdate"):
        values["birthdate"] = to_date(ctx.text("Birthdate"), "Birthdate")
    return values


def _refused(ctx: RunContext, fields: dict, missing: list[str]) -> Reply:
    text = ", ".join(missing)
    reply = Reply.error(f"Не хватает данных для карты: {text}", Created="N")
    manager = fields.get("manager_id")
    settings = notice_settings.load(ctx.portal)
    if ctx.flag("NotifyManager", True) and manager and settings["notices"]["card_refused_manager"]:
        context = {"first_name": fields.get("first_name") or "", "missing": text,
                   "last_name": fields.get("last_name") or ""}
        row = notices.record(ctx.portal, None, "card_refused_manager", str(manager), context,
                             f"{ctx.key}:card_refused_manager", settings)
        call = notices.chat_call(row, settings)
        if call:
            reply.calls[call[0]] = call[1]
    return reply
