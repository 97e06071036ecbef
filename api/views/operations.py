"""Money movements on a card. Every POST needs an Idempotency-Key header."""
from __future__ import annotations

from flask import g, request
from flask_smorest import Blueprint

from api import schemas
from api.auth import require_api_key
from api.errors import ApiError
from api.ledger import cards, history, operations, reversals
from api.ledger.idempotency import KEY_MAX_LEN, Outcome
from notifications.followup import queue_follow_up

FOLLOWED = ("accrual", "debit", "adjustment", "reversal")

bp = Blueprint("operations", __name__, url_prefix="/api/v1/cards",
               description="Accruals, debits, reversals, adjustments and history")
bp.before_request(require_api_key)

KEY_DOC = {"parameters": [{"in": "header", "name": "Idempotency-Key", "required": True,
                           "schema": {"type": "string", "maxLength": KEY_MAX_LEN}}]}


def idempotency_key() -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise ApiError(400, "idempotency_key_required", "Нужен заголовок Idempotency-Key.",
                       {"Idempotency-Key": "Обязательный заголовок."})
    if len(key) > KEY_MAX_LEN:
        raise ApiError(400, "idempotency_key_invalid", f"Idempotency-Key длиннее {KEY_MAX_LEN}.",
                       {"Idempotency-Key": f"Не длиннее {KEY_MAX_LEN} символов."})
    return key


def answer(operation, *args, **kwargs):
    """Run a ledger operation and, in the same transaction, what follows it (notices,
    the contact's fields in Bitrix24); a replay writes and sends nothing new."""
    def follow(outcome: Outcome) -> None:  # run by the ledger inside its transaction
        if outcome.result.get("kind") in FOLLOWED:
            queue_follow_up(g.portal, outcome.card, outcome.result["kind"], outcome.result,
                            kwargs["key"])

    outcome: Outcome = operation(*args, follow=follow, **kwargs)
    headers = {"Idempotency-Hit": "true"} if outcome.replayed else {}
    return outcome.result, 201, headers


@bp.route("/<number>/accruals", methods=["POST"])
@bp.arguments(schemas.Accrual)
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
def accrue(data, number):
    return answer(
        operations.accrue, g.portal, cards.card_number(number), data["amount"], key=idempotency_key(), actor=g.actor,
        reference=data.get("reference"), comment=data.get("comment"))


@bp.route("/<number>/debits", methods=["POST"])
@bp.arguments(schemas.Debit)
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
def debit(data, number):
    return answer(
        operations.debit, g.portal, cards.card_number(number), data["amount"], key=idempotency_key(), actor=g.actor,
        reference=data.get("reference"), order_kop=data.get("order_amount"),
        partial=data["partial"], comment=data.get("comment"))


@bp.route("/<number>/reversals", methods=["POST"])
@bp.arguments(schemas.Reversal)
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
def reverse(data, number):
    return answer(
        reversals.reverse, g.portal, cards.card_number(number), data["reference"], key=idempotency_key(),
        actor=g.actor, comment=data.get("comment"))


@bp.route("/<number>/adjustments", methods=["POST"])
@bp.arguments(schemas.Adjustment)
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
def adjust(data, number):
    return answer(
        operations.adjust, g.portal, cards.card_number(number), data["amount"], key=idempotency_key(), actor=g.actor,
        reason=data["reason"])


@bp.route("/<number>/transactions", methods=["GET"])
@bp.arguments(schemas.EntryQuery, location="query")
@bp.response(200, schemas.EntryPage)
def transactions(args, number):
    card = cards.find_by_phone(g.portal, number)
    rows, more = history.entries(card, page=args["page"], per_page=args["per_page"],
                                 kind=args.get("kind"))
    return {"items": rows, "page": args["page"], "per_page": args["per_page"], "has_more": more}
