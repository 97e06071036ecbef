"""The client's own endpoints, called from the portal's web site in the client's browser.

No API key here: `login` and `verify` name the portal by its public site id, and the
card endpoints take the client token that `verify` returns, which reads one card only.
CORS answers only the origins configured for the portal's site (api.client_login).
"""
from __future__ import annotations

from flask import current_app, g, request
from marshmallow import Schema, fields, validate

from api import client_login, schemas
from api.client_login import LoginError
from api.errors import error_response
from api.jsonio import ApiBlueprint
from api.ledger import history
from api.ledger.fields import Money
from api.throttle import Throttled
from api.views import fails
from api.views.cards import present

bp = ApiBlueprint("client", __name__, url_prefix="/api/v1/client",
               description="The client's own login (SMS code) and their card")

STATUS = {"site_not_found": 404, "invalid_code": 401, "unauthorized": 401, "token_expired": 401}
EXPIRING_DAYS = 30
NO_KEY = {"security": []}


class LoginRequest(schemas.StrictSchema):
    site = fields.String(required=True, validate=validate.Length(1, 40),
                         metadata={"description": "The portal's public site id."})
    phone = fields.String(required=True, validate=validate.Length(1, 40))


class VerifyRequest(LoginRequest):
    code = fields.String(required=True, validate=validate.Length(1, 10))


class LoginAnswer(Schema):
    sent = fields.Boolean()
    expires_in = fields.Integer(metadata={"description": "Seconds the code is valid."})
    resend_after = fields.Integer(metadata={"description": "Seconds before another SMS."})


class TokenAnswer(Schema):
    token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class Expiring(Schema):
    date = fields.Date()
    amount = Money(attribute="amount_kop")


class ClientCard(schemas.Card):
    # An allow-list: a field added to the staff's card schema does not reach clients.
    expiring = fields.List(fields.Nested(Expiring))

    class Meta:
        fields = ("number", "first_name", "last_name", "status", "tier", "balance", "held",
                  "available", "purchases",
                  "next_tier", "expiring")


class ClientEntry(schemas.Entry):
    """What a client sees of an entry: not who made it, nor a manager's comment."""

    class Meta:
        fields = ("id", "kind", "amount", "balance_after", "reference", "purchase", "created_at")


class ClientEntryPage(schemas.Page):
    items = fields.List(fields.Nested(ClientEntry))


@bp.errorhandler(LoginError)
def _login_error(exc: LoginError):
    return error_response(STATUS.get(exc.code, 400), exc.code, exc.message, exc.fields)


@bp.errorhandler(Throttled)
def _throttled(exc: Throttled):
    body, status = error_response(429, "too_many_attempts",
                                  f"Слишком много попыток: повторите через {exc.retry_after_s} с.")
    return body, status, {"Retry-After": str(exc.retry_after_s)}


@bp.after_request
def _cors(response):
    origin = request.headers.get("Origin")
    portal_id = g.get("client_portal_id")
    # A preflight carries no body and no token, only its Origin: any enabled site's
    # origin may ask; the real request is then answered only for its own portal's.
    known = portal_id is not None or request.method == "OPTIONS"
    if known and client_login.origin_allowed(origin, portal_id):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.headers["Access-Control-Max-Age"] = "600"
    response.vary.add("Origin")
    return response


def _site(site_id):
    site = client_login.site_by_id(site_id)
    g.client_portal_id = site.portal_id
    return site


@bp.route("/login", methods=["POST"])
@bp.arguments(LoginRequest)
@bp.response(202, LoginAnswer)
@bp.doc(**NO_KEY)
@fails("invalid_json", "validation_error", "site_not_found", "too_many_attempts", public=True)
def login(data):
    """Send a one-time code by SMS to the card's phone (the same answer without a card)."""
    site = _site(data["site"])
    return client_login.request_code(site, data["phone"], request.remote_addr or "?",
                                     current_app.config["SECRET_KEY"])


@bp.route("/verify", methods=["POST"])
@bp.arguments(VerifyRequest)
@bp.response(200, TokenAnswer)
@bp.doc(**NO_KEY)
@fails("invalid_json", "validation_error", "site_not_found", "invalid_code",
       "too_many_attempts", public=True)
def verify(data):
    """Trade the code for a short-lived token that reads this one card."""
    site = _site(data["site"])
    secret = current_app.config["SECRET_KEY"]
    card = client_login.verify_code(site, data["phone"], data["code"],
                                    request.remote_addr or "?", secret)
    return {"token": client_login.issue_token(card, secret), "token_type": "Bearer",
            "expires_in": client_login.TOKEN_TTL_S}


def _card():
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise LoginError("unauthorized", "Нужен заголовок Authorization: Bearer <токен клиента>.")
    claims = client_login.read_token(token.strip(), current_app.config["SECRET_KEY"])
    g.client_portal_id = claims.portal_id
    return client_login.card_of(claims)


@bp.route("/card", methods=["GET"])
@bp.response(200, ClientCard)
@fails("unauthorized", "token_expired", public=True)
def card():
    """The logged-in client's card: balance, tier, progress, what expires in 30 days."""
    card = _card()
    expiring = history.expiring(card, days=EXPIRING_DAYS)
    return {**present(card), "expiring": [{"date": when.date(), "amount_kop": kop}
                                          for when, kop in expiring]}


@bp.route("/card/transactions", methods=["GET"])
@bp.arguments(schemas.EntryQuery, location="query")
@bp.response(200, ClientEntryPage)
@fails("unauthorized", "token_expired", "validation_error", public=True)
def transactions(args):
    rows, more = history.entries(_card(), page=args["page"], per_page=args["per_page"],
                                 kind=args.get("kind"))
    return {"items": [row.__data__ for row in rows], "page": args["page"],
            "per_page": args["per_page"], "has_more": more}
