"""Money movements on a card. Every POST needs an Idempotency-Key header."""
from __future__ import annotations

import re

from flask import g, request

from api import schemas
from api.auth import require_api_key
from api.data import audit
from api.errors import ApiError
from api.jsonio import ApiBlueprint
from api.ledger import cards, history, operations, reversals
from api.ledger.idempotency import KEY_MAX_LEN, Outcome
from api.views import CARD_NUMBER, fails
from notifications.followup import queue_follow_up

FOLLOWED = ("accrual", "debit", "adjustment", "reversal")

bp = ApiBlueprint("operations", __name__, url_prefix="/api/v1/cards",
               description="Accruals, debits, reversals, adjustments and history")
bp.before_request(require_api_key)

# Printable ASCII: what every HTTP stack passes through unchanged.
KEY_PATTERN = re.compile(r"^[\x20-\x7e]+$")
KEY_DOC = {"parameters": [{
    "in": "header", "name": "Idempotency-Key", "required": True,
    "description": "Your key for this operation: the same key and body replay the first "
                   "answer (header `Idempotency-Hit: true`); another body is 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX_LEN,
               "pattern": KEY_PATTERN.pattern, "example": "order-1001-accrual"}}]}
MOVEMENT = ("invalid_json", "idempotency_key_required", "idempotency_key_invalid",
            "validation_error", "card_not_found", "card_blocked", "idempotency_conflict")


def idempotency_key() -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise ApiError(400, "idempotency_key_required", "An Idempotency-Key header is required.",
                       {"Idempotency-Key": "Required header."})
    if not KEY_PATTERN.match(key):
        raise ApiError(400, "idempotency_key_invalid",
                       "The Idempotency-Key must be printable ASCII.",
                       {"Idempotency-Key": "Printable ASCII only."})
    if len(key) > KEY_MAX_LEN:
        raise ApiError(400, "idempotency_key_invalid",
                       f"The Idempotency-Key is longer than {KEY_MAX_LEN} characters.",
                       {"Idempotency-Key": f"At most {KEY_MAX_LEN} characters."})
    return key


def answer(operation, *args, **kwargs):
    """Run a ledger operation and, in the same transaction, what follows it (notices,
    the contact's fields in Bitrix24, the audit line); a replay writes and sends nothing
    new."""
    state = g._get_current_object()  # the proxy looked through once

    def follow(outcome: Outcome) -> None:  # run by the ledger inside its transaction
        state.card_id = outcome.card.id  # the audit line names it without reading it again
        if outcome.result.get("kind") in FOLLOWED:
            queue_follow_up(state.portal, outcome.card, outcome.result["kind"], outcome.result,
                            kwargs["key"])
        audit.record_request(201)  # in the movement's transaction (a replay: the hook's)

    outcome: Outcome = operation(*args, follow=follow, **kwargs)
    headers = {"Idempotency-Hit": "true"} if outcome.replayed else {}
    return outcome.result, 201, headers


@bp.route("/<number>/accruals", methods=["POST"], parameters=CARD_NUMBER)
@bp.arguments(schemas.Accrual, example={"amount": "1500.50", "reference": "deal-1001"})
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
@fails(*MOVEMENT, "already_accrued")
def accrue(data, number):
    """Accrue bonuses for a purchase (scope: write)

    The percent of the tier held before the purchase; one accrual per reference.
    """
    return answer(
        operations.accrue, g.portal, cards.card_number(number), data["amount"], key=idempotency_key(), actor=g.actor,
        reference=data.get("reference"), comment=data.get("comment"))


@bp.route("/<number>/debits", methods=["POST"], parameters=CARD_NUMBER)
@bp.arguments(schemas.Debit, example={"amount": "500", "order_amount": "2000",
                                       "reference": "order-2"})
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
@fails(*MOVEMENT, "insufficient_balance", "exceeds_max_share")
def debit(data, number):
    """Spend bonuses (scope: write)

    Never below zero: short is 422 `insufficient_balance` unless `partial` is true.
    """
    return answer(
        operations.debit, g.portal, cards.card_number(number), data["amount"], key=idempotency_key(), actor=g.actor,
        reference=data.get("reference"), order_kop=data.get("order_amount"),
        partial=data["partial"], comment=data.get("comment"))


@bp.route("/<number>/reversals", methods=["POST"], parameters=CARD_NUMBER)
@bp.arguments(schemas.Reversal, example={"reference": "deal-1001"})
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
@fails(*MOVEMENT, "reference_not_found", "already_reversed")
def reverse(data, number):
    """Reverse a reference's accrual and debits: a refund (scope: write)"""
    return answer(
        reversals.reverse, g.portal, cards.card_number(number), data["reference"], key=idempotency_key(),
        actor=g.actor, comment=data.get("comment"))


@bp.route("/<number>/adjustments", methods=["POST"], parameters=CARD_NUMBER)
@bp.arguments(schemas.Adjustment, example={"amount": "-100", "reason": "Duplicate order"})
@bp.response(201, schemas.OperationResult)
@bp.doc(**KEY_DOC)
@fails(*MOVEMENT, "insufficient_balance")
def adjust(data, number):
    """Adjust the balance by a signed amount, with a reason (scope: write)"""
    return answer(
        operations.adjust, g.portal, cards.card_number(number), data["amount"], key=idempotency_key(), actor=g.actor,
        reason=data["reason"])


@bp.route("/<number>/transactions", methods=["GET"], parameters=CARD_NUMBER)
@bp.arguments(schemas.EntryQuery, location="query")
@bp.response(200, schemas.EntryPage)
@fails("validation_error", "card_not_found")
def transactions(args, number):
    """A card's history, newest first (scope: read)"""
    card = cards.find_by_phone(g.portal, number)
    rows, more = history.entries(card, page=args["page"], per_page=args["per_page"],
                                 kind=args.get("kind"))
    return {"items": rows, "page": args["page"], "per_page": args["per_page"], "has_more": more}
