"""The CRM tabs: the contact's and the deal's bonuses inside their cards.

Each tab is a frame POST (PLACEMENT_OPTIONS = {"ID": "42", ...}) proven like the app's
main page (pages.frame). The tabs are for the managers who work with the client: whoever
Bitrix24 lets read the contact or deal sees its card, balance and history, with no right
granted by us; adjusting and reversing stay the right the admin grants. Whether they may
read it is asked of Bitrix24 with the viewer's own token (never the installer's), so an id
in a forged PLACEMENT_OPTIONS shows nothing its sender could not read anyway. Actions go
to the client pages' own confirmed, idempotent endpoints, or to the deal debit here.
"""
from __future__ import annotations

import json

from flask import current_app, g, request

from activities.b24client import B24Error

from api.ledger import history, operations
from api.ledger import rules as rules_mod
from api.ledger.money import MoneyError, format_kop, parse_kop, percent_of
from api.models import Card, Entry, Portal
from pages import clients, roles, web
from pages.frame import PageError, issue, verify_frame, viewer_required

bp = web.blueprint("pages_tabs", __name__, url_prefix="/b24/placements")
MOVEMENTS_SHOWN = 20


def _enter() -> None:
    viewer = verify_frame(request.form, request.args)
    g.viewer, g.token = viewer, issue(viewer)
    g.portal = Portal.get(Portal.member_id == viewer.member_id)


def _read(method: str, entity_id: int) -> dict:
    """The contact or deal as the viewer may read it, or 403 (their CRM rights apply)."""
    try:
        row = g.viewer.client(g.portal).call(method, {"id": entity_id}).get("result")
    except B24Error as exc:
        current_app.logger.info("%s %s refused for user %s: %s", method, entity_id,
                                g.viewer.user_id, exc.code)
        raise PageError(403, "Битрикс24 не дал прочитать эту запись с вашими правами.") from None
    if not isinstance(row, dict):
        raise PageError(403, "Битрикс24 не дал прочитать эту запись с вашими правами.")
    return row


def placement_id(raw) -> int | None:
    """The entity id from PLACEMENT_OPTIONS (a JSON string; shapes vary: parse defensively)."""
    try:
        options = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return None
    value = str(options.get("ID") or options.get("id") or "") if isinstance(options, dict) else ""
    return int(value) if value.isdigit() and len(value) <= 18 else None


@bp.route("/contact", methods=["POST"])
def contact():
    _enter()
    contact_id = placement_id(request.form.get("PLACEMENT_OPTIONS"))
    if contact_id is None:
        raise web.bad_request("Не удалось определить контакт.")
    _read("crm.contact.get", contact_id)
    card = Card.get_or_none((Card.portal == g.portal) & (Card.contact_id == contact_id))
    if card is None:
        return web.render("tab_contact.html", card=None, contact_id=contact_id, embedded=True)
    program = rules_mod.load(g.portal)
    entries, _ = history.entries(card, per_page=MOVEMENTS_SHOWN)
    return web.render("tab_contact.html", card=card, contact_id=contact_id,
                      tier=program.tier_for(card.purchases_kop),
                      ahead=program.next_tier(card.purchases_kop),
                      expiring=history.expiring(card, days=30), entries=entries,
                      adjust_key=clients.new_key(), embedded=True)


@bp.route("/deal", methods=["POST"])
def deal():
    _enter()
    deal_id = placement_id(request.form.get("PLACEMENT_OPTIONS"))
    if deal_id is None:
        raise web.bad_request("Не удалось определить сделку.")
    return _deal_page(deal_id, _read("crm.deal.get", deal_id))


def _deal_page(deal_id: int, deal_row: dict, errors: dict | None = None, status: int = 200):
    reference = f"deal:{deal_id}"
    moves = list(Entry.select().where((Entry.portal == g.portal) & (Entry.reference == reference))
                 .order_by(Entry.id))
    card = Card.get_by_id(moves[0].card_id) if moves else _card_of(deal_row)
    accrued = sum(e.amount_kop for e in moves if e.kind == "accrual")
    debited = -sum(e.amount_kop for e in moves if e.kind == "debit")
    reversed_ids = {e.reverses_id for e in moves if e.kind == "reversal"}
    reversible = any(e.kind in ("accrual", "debit") and e.id not in reversed_ids for e in moves)
    order_kop = _deal_amount(deal_row)
    allowed = _allowed_debit(card, order_kop, debited)
    return web.render("tab_deal.html", status, deal_id=deal_id, deal=deal_row, card=card,
                      moves=moves, accrued=accrued, debited=debited, reversible=reversible,
                      reference=reference, order_kop=order_kop, allowed=allowed,
                      order_text=format_kop(order_kop) if order_kop else "",
                      errors=errors or {}, keys={"debit": clients.new_key(),
                                                 "reverse": clients.new_key()}, embedded=True)


def _card_of(deal_row: dict) -> Card | None:
    contact = str(deal_row.get("CONTACT_ID") or "")
    if not contact.isdigit() or contact == "0":
        return None
    return Card.get_or_none((Card.portal == g.portal) & (Card.contact_id == int(contact)))


def _deal_amount(deal_row: dict) -> int | None:
    try:
        return parse_kop(deal_row.get("OPPORTUNITY"), allow_zero=True)
    except MoneyError:
        return None


def _allowed_debit(card: Card | None, order_kop: int | None, debited: int) -> int:
    """What may still be paid with bonuses for this deal: the share cap less what was paid."""
    if card is None or card.status != "active":
        return 0
    cap = card.balance_kop
    if order_kop:
        share = rules_mod.load(g.portal).max_debit_share_percent
        cap = min(cap, percent_of(order_kop, share, mode="down", step_kop=1) - debited)
    return max(cap, 0)


@bp.route("/deal/<int:deal_id>/debit", methods=["POST"])
@viewer_required
@roles.require(roles.ADJUST)
def debit(deal_id: int):
    number = web.form_text("card", 20)
    card = Card.get_or_none((Card.portal == g.portal) & (Card.number == number))
    if card is None:
        raise web.not_found("Карта")
    # The order amount is the deal's as Bitrix24 tells the viewer, never the form's: a
    # posted order_amount would let anyone lift the max-share cap.
    deal_row = _read("crm.deal.get", deal_id)
    order_kop = _deal_amount(deal_row)
    values = {"amount": web.form_text("amount", 40), "key": clients.form_key(), "card": number,
              "order_amount": format_kop(order_kop) if order_kop else ""}
    try:
        amount_kop = parse_kop(values["amount"])
    except MoneyError as exc:
        return _deal_page(deal_id, deal_row, {"amount": str(exc)}, 422)
    if not web.confirmed():
        return web.confirm("Списать бонусы по сделке", [
            ("Карта", card.number), ("Сделка", str(deal_id)), ("Списать", web.money(amount_kop))],
            web.page_url("pages_tabs.debit", deal_id=deal_id), values,
            web.page_url("pages_clients.show", number=card.number))
    return clients.run_operation(card, values, operations.debit, amount_kop,
                                 reference=f"deal:{deal_id}", order_kop=order_kop)
