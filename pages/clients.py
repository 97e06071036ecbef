"""Clients: search, a client's page, and the card actions (each confirmed first).

Viewing needs the `view_cards` right, acting the `adjust` right (admins hold both). An
adjustment or reversal runs with its follow-up (notices, the contact's fields) in one
transaction, as the REST API does; the form's idempotency key makes a double submit
apply once.
"""
from __future__ import annotations

import logging
import re
import uuid

from flask import g, request

from api.db import db
from api.ledger import cards, history, operations, reversals
from api.ledger import rules as rules_mod
from api.ledger.errors import CardNotFound, LedgerError
from api.ledger.money import MoneyError, parse_kop
from api.ledger import rollups
from api.models import Card, ClientMonth, Entry, Notification
from notifications.followup import queue_follow_up
from pages import roles, web
from pages.frame import viewer_required

log = logging.getLogger(__name__)
bp = web.blueprint("pages_clients", __name__, url_prefix="/b24/app/clients")
PER_PAGE = 20
_KEY = re.compile(r"[A-Za-z0-9-]{8,64}")


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.VIEW_CARDS)
def search():
    query = request.args.get("q", "").strip()[:cards.SEARCH_MAX_LEN]
    page = _page_arg()
    rows, more = cards.search(g.portal, query, page=page, per_page=PER_PAGE, where=_filters())
    return web.render("clients.html", rows=rows, more=more, page=page, query=query)


def _filters():
    """?tier=, ?issued_from=&issued_to= (dates), ?month=YYYY-MM-01 (a purchase that month),
    &repeat=1 (two or more)."""
    where = None
    tier = request.args.get("tier", "")[:64]
    if tier:
        where = Card.tier == tier
    issued = [request.args.get(k, "") for k in ("issued_from", "issued_to")]
    if all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in issued):
        clause = (Card.created_at >= issued[0]) & (Card.created_at < issued[1])
        where = clause if where is None else where & clause
    month = request.args.get("month", "")
    if re.fullmatch(r"\d{4}-\d{2}-01", month):
        rollups.catch_up(g.portal)  # folded after commit (api.ledger.rollups)
        buyers = ClientMonth.select(ClientMonth.card).where(
            (ClientMonth.portal == g.portal) & (ClientMonth.month == month)
            & (ClientMonth.purchases > (1 if request.args.get("repeat") == "1" else 0)))
        clause = Card.id.in_(buyers)
        where = clause if where is None else where & clause
    return where


@bp.route("/<number>", methods=["GET"])
@viewer_required
@roles.require(roles.VIEW_CARDS)
def show(number):
    return card_page(_card(number))


def card_page(card, errors: dict | None = None, values: dict | None = None, status=200):
    """The client's page; a rejected form comes back with what was typed and its own key."""
    program = rules_mod.load(g.portal)
    page = _page_arg()
    entries, more = history.entries(card, page=page, per_page=PER_PAGE)
    values = values or {}
    # One operation key per form and render: the same key twice is one operation.
    keys = {"adjust": new_key(), "reverse": new_key()}
    if "key" in values:
        keys["reverse" if "reference" in values else "adjust"] = values["key"]
    return web.render(
        "client.html", status, card=card, tier=program.tier_for(card.purchases_kop),
        ahead=program.next_tier(card.purchases_kop), expiring=history.expiring(card, days=30),
        entries=entries, more=more, page=page, errors=errors or {}, values=values, keys=keys,
        references=_references(card),
        notices=list(Notification.select().where(Notification.card == card)
                     .order_by(Notification.id.desc()).limit(PER_PAGE)))


@bp.route("/<number>/adjust", methods=["POST"])
@viewer_required
@roles.require(roles.ADJUST)
def adjust(number):
    card, key = _card(number), form_key()
    values = {"amount": web.form_text("amount", 40), "reason": web.form_text("reason"),
              "key": key}
    errors = {}
    try:
        amount_kop = parse_kop(values["amount"], allow_negative=True)
    except MoneyError as exc:
        errors["amount"] = str(exc)
    if not values["reason"]:
        errors["reason"] = "Укажите причину корректировки."
    if errors:
        return card_page(card, errors, values, 422)
    if not web.confirmed():
        return web.confirm("Корректировка баланса", [
            ("Карта", card.number), ("Сумма", web.money(amount_kop)),
            ("Причина", values["reason"])], web.page_url("pages_clients.adjust", number=number),
            values, web.page_url("pages_clients.show", number=number))
    return run_operation(card, values, operations.adjust, amount_kop, reason=values["reason"])


@bp.route("/<number>/reverse", methods=["POST"])
@viewer_required
@roles.require(roles.ADJUST)
def reverse(number):
    card, key = _card(number), form_key()
    values = {"reference": web.form_text("reference", 100), "key": key}
    if not values["reference"]:
        return card_page(card, {"reference": "Укажите сделку или заказ."}, values, 422)
    if not web.confirmed():
        return web.confirm("Отменить начисление по сделке", [
            ("Карта", card.number), ("ID сделки или заказа", values["reference"])],
            web.page_url("pages_clients.reverse", number=number), values,
            web.page_url("pages_clients.show", number=number))
    return run_operation(card, values, reversals.reverse, values["reference"])


def run_operation(card, values: dict, operation, *args, **kwargs):
    """One ledger operation and its follow-up in one transaction; errors beside the fields."""
    key = f"page:{values['key']}"
    try:
        with db.atomic():
            outcome = operation(g.portal, card.number, *args, key=key, actor=g.viewer.actor,
                                **kwargs)
            if not outcome.replayed:
                fresh = cards.get_card(g.portal, card.number)
                queue_follow_up(g.portal, fresh, outcome.result["kind"], outcome.result, key)
    except LedgerError as exc:
        field = next(iter(exc.fields), "reference" if "reference" in values else "amount")
        return card_page(card, {field: exc.message}, values, 422)
    done = "replayed" if outcome.replayed else {
        reversals.reverse: "reversed", operations.debit: "debited"}.get(operation, "adjusted")
    return web.redirect_to("pages_clients.show", done, number=card.number)


@bp.route("/<number>/status", methods=["POST"])
@viewer_required
@roles.require(roles.ADJUST)
def set_status(number):
    card = _card(number)
    status = request.form.get("status")
    if status not in ("active", "blocked"):
        raise web.bad_request("Неизвестный статус карты.")
    if not web.confirmed():
        title = "Заблокировать карту" if status == "blocked" else "Разблокировать карту"
        return web.confirm(title, [("Карта", card.number)],
                           web.page_url("pages_clients.set_status", number=number),
                           {"status": status}, web.page_url("pages_clients.show", number=number))
    with db.atomic():
        cards.set_status(g.portal, card.number, status)
    # The card has no column for who changed its status: the log keeps the actor.
    log.info("card %s of %s set %s by %s", card.number, g.portal.member_id, status,
             g.viewer.actor)
    return web.redirect_to("pages_clients.show", "blocked" if status == "blocked" else
                           "unblocked", number=card.number)


def _card(number: str):
    if not (isinstance(number, str) and number.isdigit() and len(number) <= 20):
        raise web.not_found("Карта не найдена.")
    try:
        return cards.get_card(g.portal, number)
    except CardNotFound:
        raise web.not_found("Карта не найдена.") from None


def new_key() -> str:
    """One operation key per rendered form: submitting it twice is one operation."""
    return uuid.uuid4().hex


def form_key() -> str:
    key = request.form.get("key", "")
    if not _KEY.fullmatch(key):
        raise web.bad_request("Форма без ключа операции: откройте страницу заново.")
    return key


def _page_arg() -> int:
    raw = request.args.get("page", "")
    return max(1, min(int(raw) if raw.isdigit() else 1, 10_000))


def _references(card) -> list[str]:
    """Recent deals with an accrual: suggestions for the reversal field."""
    rows = (Entry.select(Entry.reference).where((Entry.card == card) & (Entry.kind == "accrual")
                                                & Entry.reference.is_null(False))
            .order_by(Entry.id.desc()).limit(PER_PAGE))
    return list(dict.fromkeys(r.reference for r in rows))
