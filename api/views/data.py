"""Exports (cards, a period's movements: streamed CSV), the audit trail, and forgetting
a client. The work is in api.data; this module only speaks HTTP."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from flask import Response, g, request, stream_with_context
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api import schemas
from api.auth import require_api_key
from api.data import audit, csvout, exports, forget, merges
from api.db import connection
from api.jsonio import ApiBlueprint

bp = ApiBlueprint("data", __name__, url_prefix="/api/v1", description="Exports, audit trail, forgetting a client")
bp.before_request(require_api_key)
bp.required_scope = "admin"  # api.auth: settings and bulk personal data
PERIOD_DAYS_MAX = 3660
# A day after the last one is computed: 9999-12-31 would overflow into a 500.
DAYS = validate.Range(date(2000, 1, 1), date(2100, 12, 31))
AUDIT_CSV_MAX = 1_000_000


class Period(schemas.StrictSchema):
    start = fields.Date(required=True, data_key="from", validate=DAYS)
    end = fields.Date(required=True, data_key="to", validate=DAYS,
                      metadata={"description": "last day, included"})

    @validates_schema
    def _ordered(self, data, **kw):
        if data["end"] < data["start"]:
            raise ValidationError({"to": ["Не раньше from."]})
        if (data["end"] - data["start"]).days > PERIOD_DAYS_MAX:
            raise ValidationError({"to": [f"Не больше {PERIOD_DAYS_MAX} дней."]})


class AuditQuery(schemas.StrictSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, audit.PAGE_MAX))
    action = fields.String(validate=validate.Length(1, 100))
    actor = fields.String(validate=validate.Length(1, 200))
    target = fields.String(validate=validate.Length(1, 100))
    since = fields.Date(data_key="from", validate=DAYS)
    until = fields.Date(data_key="to", validate=DAYS)


class AuditRow(Schema):
    id = fields.Integer()
    created_at = fields.String()
    actor = fields.String()
    action = fields.String()
    target = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    details = fields.Dict(allow_none=True)


class AuditPage(schemas.Page):
    items = fields.List(fields.Nested(AuditRow))


class Forget(schemas.StrictSchema):
    reason = fields.String(required=True, validate=validate.Length(1, forget.REASON_MAX_LEN))


class MergeInto(schemas.StrictSchema):
    into = fields.String(required=True, validate=validate.Length(1, 40),
                         metadata={"description": "phone or number of the card that remains"})


class Forgotten(Schema):
    card = fields.String(metadata={"description": "the pseudonymous card id the ledger keeps"})
    status = fields.String()


def _csv(name: str, header, rows) -> Response:
    # Reading the client base out is an act on personal data (152-FZ): who, when, what.
    audit.record(g.portal, g.actor, "data.export", source=request.remote_addr,
                 details={"file": name})

    def generate():
        with connection():  # the request's connection may be gone when streaming ends
            yield from csvout.pieces(header, rows)
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/exports/cards.csv", methods=["GET"])
@bp.response(200, content_type="text/csv")
def cards_csv():
    """Every card with balance, tier, purchases and totals (streamed)."""
    return _csv("cards.csv", exports.CARD_HEADER, exports.card_rows(g.portal))


@bp.route("/exports/movements.csv", methods=["GET"])
@bp.arguments(Period, location="query")
@bp.response(200, content_type="text/csv")
def movements_csv(args):
    """Every ledger entry from `from` to `to` (UTC days, both included), streamed."""
    start, end = args["start"], args["end"] + timedelta(days=1)
    return _csv(f"movements-{args['start']}-{args['end']}.csv", exports.MOVEMENT_HEADER,
                exports.movement_rows(g.portal, start, end))


def _audit_query(args):
    day = lambda d: datetime.combine(d, time()) if d else None  # noqa: E731
    return audit.entries(g.portal, action=args.get("action"), actor=args.get("actor"),
                         target=args.get("target"), since=day(args.get("since")),
                         until=day(args.get("until")) and day(args["until"]) + timedelta(days=1))


@bp.route("/audit", methods=["GET"])
@bp.arguments(AuditQuery, location="query")
@bp.response(200, AuditPage)
def audit_page(args):
    """The audit trail, newest first; filter by action prefix, actor, target, period."""
    per_page = args["per_page"]
    rows = list(_audit_query(args).offset((args["page"] - 1) * per_page).limit(per_page + 1))
    return {"items": [audit.as_dict(r) for r in rows[:per_page]], "page": args["page"],
            "per_page": per_page, "has_more": len(rows) > per_page}


@bp.route("/audit.csv", methods=["GET"])
@bp.arguments(AuditQuery, location="query")
@bp.response(200, content_type="text/csv")
def audit_csv(args):
    query = _audit_query(args).limit(AUDIT_CSV_MAX)

    def rows():  # a function, not a generator expression: that would run the query now
        for row in query:
            yield audit.csv_row(row)
    return _csv("audit.csv", audit.CSV_HEADER, rows())


@bp.route("/cards/<number>/anonymise", methods=["POST"])
@bp.arguments(Forget)
@bp.response(200, Forgotten)
def anonymise(data, number):
    """Forget the client (152-FZ): personal data erased, the ledger kept under a pseudonym."""
    from api.ledger.cards import card_number

    card = forget.anonymise(g.portal, card_number(number), actor=g.actor, reason=data["reason"],
                            source=request.remote_addr)
    return {"card": card.number, "status": card.status}


@bp.route("/cards/<number>/merge", methods=["POST"])
@bp.arguments(MergeInto)
@bp.response(200, schemas.Card)
def merge(data, number):
    """Close this card into another: balance (lot by lot, expiry kept) and purchases move
    as `transfer` entries; this card is closed and points to the other. Once per pair."""
    from api.ledger.cards import find_by_phone
    from api.views.cards import present

    source, target = find_by_phone(g.portal, number), find_by_phone(g.portal, data["into"])
    return present(merges.merge_cards(g.portal, source, target, actor=g.actor))
