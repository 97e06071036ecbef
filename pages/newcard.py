"""Issuing a card for a CRM contact from the pages: the contact is read from Bitrix24,
its data shown with what is missing, and only then may the card be issued (that page is
the confirmation). The POST reads the contact again: posted card data is never trusted."""
from __future__ import annotations

from flask import g, request

from activities import contacts
from activities.b24client import B24Error
from api.db import db
from api.ledger import cards
from api.ledger import rules as rules_mod
from api.ledger.errors import CardNotFound, LedgerError
from background.outbox import enqueue
from pages import roles, web
from pages.frame import viewer_required
from pages.rules import FIELD_LABELS

bp = web.blueprint("pages_newcard", __name__, url_prefix="/b24/app/clients/new")
SHOWN = ("last_name", "first_name", "middle_name", "phone", "email", "birthdate",
         "client_category")


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.ADJUST)
def show():
    contact_id = _contact_id(request.args.get("contact_id"))
    if contact_id is None:
        return _page(None, {}, {})
    data, error = _read(contact_id)
    return _page(contact_id, data, {"contact_id": error} if error else _problems(data))


@bp.route("", methods=["POST"])
@viewer_required
@roles.require(roles.ADJUST)
def create():
    contact_id = _contact_id(request.form.get("contact_id"))
    if contact_id is None:
        return _page(None, {}, {"contact_id": "Введите число."}, 422)
    data, error = _read(contact_id)
    if error:
        return _page(contact_id, data, {"contact_id": error}, 422)
    try:
        with db.atomic():
            card, created = cards.create_card(g.portal, data, actor=g.viewer.actor)
            update = contacts.fields_update(card)
            if update and created:  # the card number onto the contact, like the activity
                enqueue(g.portal, f"page:card:{card.number}", {"contact_fields": update})
    except LedgerError as exc:
        return _page(contact_id, data, exc.fields or {"contact_id": exc.message}, 422)
    return web.redirect_to("pages_clients.show", "created" if created else "existed",
                           number=card.number)


def _contact_id(raw) -> int | None:
    return int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) <= 18 else None


def _read(contact_id: int) -> tuple[dict, str | None]:
    """The card data of the contact, as the card-creating activity reads it."""
    try:
        # With the viewer's own token: they issue a card only for a contact they may read.
        row = g.viewer.client(g.portal).call("crm.contact.get", {"id": contact_id}).get("result")
    except B24Error as exc:
        return {}, f"Контакт не найден. ({exc.code or exc.description})"
    if not isinstance(row, dict) or "ID" not in row:
        return {}, "Контакт не найден."
    program = rules_mod.load(g.portal)
    return contacts.card_data(row, program.client_category_field), None


def _problems(data: dict) -> dict:
    """What stops the card: missing required fields, a phone that is not a number."""
    program = rules_mod.load(g.portal)
    problems = {name: "Не заполнено." for name in cards.missing_fields(data, program)}
    if data.get("phone") and "phone" not in problems:
        try:
            cards.card_number(data["phone"])
        except LedgerError as exc:
            problems["phone"] = exc.fields.get("phone", exc.message)
    return problems


def _page(contact_id, data: dict, errors: dict, status: int = 200):
    existing = None
    if contact_id is not None:
        try:
            existing = cards.find_by_contact(g.portal, contact_id)
        except CardNotFound:
            pass
    return web.render("new_card.html", status, contact_id=contact_id, data=data,
                      errors=errors, shown=SHOWN, labels=FIELD_LABELS, existing=existing)
