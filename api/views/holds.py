"""Holds: reserve bonuses (hold), then debit them (capture) or give them back (release).
Every POST needs an Idempotency-Key header, like the other movements."""
from __future__ import annotations

from flask import g
from marshmallow import Schema, fields, validate

from api import schemas
from api.auth import require_api_key
from api.clock import utcnow
from api.jsonio import ApiBlueprint
from api.ledger import cards, holds
from api.ledger.fields import Money
from api.views import CARD_NUMBER, fails
from api.views.operations import KEY_DOC, answer, idempotency_key

bp = ApiBlueprint("holds", __name__, url_prefix="/api/v1",
                  description="Holds: bonuses reserved until a capture or a release")
bp.before_request(require_api_key)


class HoldIn(schemas.StrictSchema):
    amount = Money(required=True)
    reference = schemas.Reference()
    expires_in = fields.Integer(strict=True, validate=validate.Range(60, holds.TTL_MAX_S),
                                metadata={"description": "Seconds; default 3 days."})


class CaptureIn(schemas.StrictSchema):
    amount = Money(metadata={"description": "Part of the hold to debit; default all of it."})


class HoldOut(Schema):
    hold_id = fields.Integer()
    card_number = fields.String()
    reference = fields.String(allow_none=True)
    amount = Money(attribute="amount_kop", allow_negative=True)
    captured = Money(attribute="captured_kop")
    status = fields.String()
    expires_at = fields.String()
    created_at = fields.String()
    balance = Money(attribute="balance_kop")
    available = Money(attribute="available_kop")
    debited = Money(attribute="debited_kop")
    entry_id = fields.Integer()


class CardHolds(Schema):
    balance = Money(attribute="balance_kop")
    held = Money(attribute="held_kop")
    available = Money(attribute="available_kop")
    items = fields.List(fields.Nested(HoldOut))


@bp.route("/cards/<number>/holds", methods=["POST"], parameters=CARD_NUMBER)
@bp.arguments(HoldIn)
@bp.response(201, HoldOut)
@bp.doc(**KEY_DOC)
@fails("invalid_json", "idempotency_key_required", "idempotency_key_invalid", "card_not_found",
       "card_blocked", "idempotency_conflict", "validation_error", "insufficient_balance")
def create(data, number):
    """Reserve bonuses (scope: write)

    Never more than the balance that other holds leave free; nothing is debited yet.
    """
    return answer(holds.hold, g.portal, cards.card_number(number), data["amount"],
                  key=idempotency_key(), actor=g.actor, reference=data.get("reference"),
                  expires_in_s=data.get("expires_in"))


@bp.route("/cards/<number>/holds", methods=["GET"], parameters=CARD_NUMBER)
@bp.response(200, CardHolds)
@fails("card_not_found")
def index(number):
    """The card's holds, and what they leave available (scope: read)"""
    card, now = cards.find_by_phone(g.portal, number), utcnow()
    held = holds.held_kop(card.id, now)
    return {"balance_kop": card.balance_kop, "held_kop": held,
            "available_kop": max(card.balance_kop - held, 0),
            "items": [holds.shown(h, now) for h in holds.of_card(card, now)]}


@bp.route("/holds/<int:hold_id>/capture", methods=["POST"])
@bp.arguments(CaptureIn)
@bp.response(201, HoldOut)
@bp.doc(**KEY_DOC)
@fails("invalid_json", "idempotency_key_required", "idempotency_key_invalid", "hold_not_found",
       "hold_closed", "idempotency_conflict", "validation_error", "insufficient_balance")
def capture(data, hold_id):
    """Debit a hold (scope: write)

    All of it, or `amount` of it; the rest is freed.
    """
    return answer(holds.capture, g.portal, hold_id, key=idempotency_key(), actor=g.actor,
                  amount_kop=data.get("amount"))


@bp.route("/holds/<int:hold_id>/release", methods=["POST"])
@bp.response(200, HoldOut)
@bp.doc(**KEY_DOC)
@fails("idempotency_key_required", "idempotency_key_invalid", "hold_not_found", "hold_closed",
       "idempotency_conflict")
def release(hold_id):
    """Give a hold's bonuses back (scope: write)"""
    result, _status, headers = answer(holds.release, g.portal, hold_id, key=idempotency_key(),
                                      actor=g.actor)
    return result, 200, headers
