"""Cards: issue, find, list, block."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from api import schemas
from api.auth import require_api_key
from api.errors import ApiError
from api.ledger import cards, rules

bp = Blueprint("cards", __name__, url_prefix="/api/v1/cards", description="Loyalty cards")
bp.before_request(require_api_key)


def present(card, created: bool | None = None, program=None) -> dict:
    """The card as the API shows it, with progress to the next tier. A list passes the
    portal's rules once instead of reading them again per card."""
    program = program or rules.load(card.portal_id)  # the id: no read of the portal row
    ahead = program.next_tier(card.purchases_kop)
    out = {**card.__data__, "created": created, "next_tier": None}
    if ahead:
        out["next_tier"] = {"name": ahead.name, "threshold_kop": ahead.threshold_kop,
                            "remaining_kop": ahead.threshold_kop - card.purchases_kop}
    return out


@bp.route("", methods=["POST"])
@bp.arguments(schemas.CardCreate)
@bp.response(201, schemas.Card)
@bp.alt_response(200, schema=schemas.Card, description="The contact already had this card.")
def create(data):
    card, created = cards.create_card(g.portal, data, actor=g.actor)
    return present(card, created), 201 if created else 200


@bp.route("", methods=["GET"])
@bp.arguments(schemas.CardQuery, location="query")
@bp.response(200, schemas.CardPage)
def search(args):
    rows, more = cards.search(g.portal, args.get("q"), page=args["page"], per_page=args["per_page"])
    program = rules.load(g.portal)
    return {"items": [present(c, program=program) for c in rows], "page": args["page"],
            "per_page": args["per_page"], "has_more": more}


@bp.route("/lookup", methods=["GET"])
@bp.arguments(schemas.Lookup, location="query")
@bp.response(200, schemas.Card)
def lookup(args):
    """One card by phone (any format), card number or Bitrix24 contact id."""
    if "contact_id" in args:
        return present(cards.find_by_contact(g.portal, args["contact_id"]))
    if "phone" in args or "number" in args:
        return present(cards.find_by_phone(g.portal, args.get("phone") or args["number"]))
    raise ApiError(400, "lookup_key_required", "Укажите phone, number или contact_id.",
                   {"phone": "Нужен один из параметров."})


@bp.route("/<number>", methods=["GET"])
@bp.response(200, schemas.Card)
def get(number):
    return present(cards.find_by_phone(g.portal, number))


@bp.route("/<number>/block", methods=["POST"])
@bp.response(200, schemas.Card)
def block(number):
    return present(cards.set_status(g.portal, cards.card_number(number), "blocked"))


@bp.route("/<number>/unblock", methods=["POST"])
@bp.response(200, schemas.Card)
def unblock(number):
    return present(cards.set_status(g.portal, cards.card_number(number), "active"))
