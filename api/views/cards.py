"""Cards: issue, find, list, block."""
from __future__ import annotations

from flask import g

from api import schemas
from api.auth import require_api_key
from api.errors import ApiError
from api.clock import utcnow
from api.jsonio import ApiBlueprint
from api.ledger import cards, holds, rules
from api.views import CARD_NUMBER, fails

bp = ApiBlueprint("cards", __name__, url_prefix="/api/v1/cards", description="Loyalty cards")
bp.before_request(require_api_key)


def present(card, created: bool = False, program=None, with_holds: bool = True) -> dict:
    """The card as the API shows it, with progress to the next tier and what holds
    reserve. A list passes the portal's rules once and skips the holds per card."""
    program = program or rules.for_card(card)  # cached by the token read with the card
    ahead = program.next_tier(card.purchases_kop)
    out = {**card.__data__, "created": created, "next_tier": None}
    if with_holds:
        held = getattr(card, "held_kop", None)  # read with the card (api.ledger.operations)
        out["held_kop"] = holds.held_kop(card.id, utcnow()) if held is None else held
        out["available_kop"] = max(card.balance_kop - out["held_kop"], 0)
    if ahead:
        out["next_tier"] = {"name": ahead.name, "threshold_kop": ahead.threshold_kop,
                            "remaining_kop": ahead.threshold_kop - card.purchases_kop}
    return out


@bp.route("", methods=["POST"])
@bp.arguments(schemas.CardCreate, example={
    "phone": "+7 916 123-45-67", "last_name": "Петрова", "first_name": "Анна",
    "client_category": "Врач", "contact_id": 42})
@bp.response(201, schemas.Card)
@bp.alt_response(200, schema=schemas.Card, description="The contact already had this card.")
@fails("invalid_json", "validation_error", "missing_fields", "card_exists")
def create(data):
    """Issue a card (scope: write)

    The card number is the mobile phone as digits. Issuing again for the same contact
    answers 200 with the card it has; a welcome bonus, if the rules give one, is granted once.
    """
    card, created = cards.create_card(g.portal, data, actor=g.actor)
    return present(card, created), 201 if created else 200


@bp.route("", methods=["GET"])
@bp.arguments(schemas.CardQuery, location="query")
@bp.response(200, schemas.CardPage)
@fails("validation_error")
def search(args):
    """Search cards (scope: read)

    By phone in any format, card number, name or e-mail; newest first, paged.
    """
    rows, more = cards.search(g.portal, args.get("q"), page=args["page"], per_page=args["per_page"])
    program = rules.load(g.portal)
    return {"items": [present(c, program=program, with_holds=False) for c in rows],
            "page": args["page"],
            "per_page": args["per_page"], "has_more": more}


@bp.route("/lookup", methods=["GET"])
@bp.arguments(schemas.Lookup, location="query")
@bp.response(200, schemas.Card)
@fails("lookup_key_required", "validation_error", "card_not_found")
def lookup(args):
    """Find one card by phone, card number or Bitrix24 contact id (scope: read)"""
    if "contact_id" in args:
        return present(cards.find_by_contact(g.portal, args["contact_id"]))
    if "phone" in args or "number" in args:
        return present(cards.find_by_phone(g.portal, args.get("phone") or args["number"]))
    raise ApiError(400, "lookup_key_required", "Give phone, number or contact_id.",
                   {"phone": "One of phone, number, contact_id is required."})


@bp.route("/<number>", methods=["GET"], parameters=CARD_NUMBER)
@bp.response(200, schemas.Card)
@fails("validation_error", "card_not_found")
def get(number):
    """One card with balance, tier and progress to the next tier (scope: read)

    `number` is the card number or the phone in any format.
    """
    return present(cards.find_by_phone(g.portal, number))


@bp.route("/<number>/block", methods=["POST"], parameters=CARD_NUMBER)
@bp.response(200, schemas.Card)
@fails("validation_error", "card_not_found")
def block(number):
    """Block a card: it neither earns nor spends (scope: write)"""
    return present(cards.set_status(g.portal, cards.card_number(number), "blocked"))


@bp.route("/<number>/unblock", methods=["POST"], parameters=CARD_NUMBER)
@bp.response(200, schemas.Card)
@fails("validation_error", "card_not_found")
def unblock(number):
    """Unblock a card (scope: write)"""
    return present(cards.set_status(g.portal, cards.card_number(number), "active"))
