"""The REST API's blueprints and its OpenAPI document.

The document tells the truth about errors: every operation lists each status it can
answer with the codes behind it (CODES), all in the one shape of api.schemas.ErrorResponse.
Money is a decimal string with a pattern, a timestamp ISO 8601 with its offset.
"""
from __future__ import annotations

from flask_smorest import Api, Blueprint

from api.ledger.fields import Money, Percent
from api.schemas import ErrorResponse

# code → (status, when). The codes are stable; a new one is added here and in its view.
CODES = {
    "invalid_json": (400, "the body is not JSON, or not a JSON object"),
    "idempotency_key_required": (400, "no Idempotency-Key header"),
    "idempotency_key_invalid": (400, "the Idempotency-Key is too long or not printable ASCII"),
    "lookup_key_required": (400, "none of phone, number, contact_id"),
    "unauthorized": (401, "no API key, or an unknown or revoked one"),
    "insufficient_scope": (403, "the key lacks the scope this operation needs"),
    "card_not_found": (404, "no such card in the key's portal"),
    "reference_not_found": (404, "nothing to reverse for this reference"),
    "card_exists": (409, "another contact holds a card with this phone"),
    "card_blocked": (409, "the card is blocked"),
    "already_accrued": (409, "this reference was already accrued"),
    "already_reversed": (409, "this reference was already reversed"),
    "idempotency_conflict": (409, "the Idempotency-Key was used with another body"),
    "version_conflict": (409, "If-Match names a version that is no longer current"),
    "validation_error": (422, "a field is missing, malformed or out of range; `fields` "
                              "names each"),
    "missing_fields": (422, "the program's required card fields are missing"),
    "insufficient_balance": (422, "the card has fewer bonuses; `details.available`"),
    "exceeds_max_share": (422, "more than the rules let bonuses pay of this order"),
    "invalid_code": (401, "the SMS code is wrong or expired"),
    "token_expired": (401, "the client's session expired: log in again"),
    "site_not_found": (404, "no such client site, or client login is off there"),
    "site_not_configured": (404, "the portal has no client site yet: PUT one"),
    "not_found": (404, "what the path names does not exist in the key's portal"),
    "hold_not_found": (404, "no such hold in the key's portal"),
    "hold_closed": (409, "the hold was captured, released or has expired"),
    "too_many_attempts": (429, "too many tries; wait `Retry-After` seconds"),
    "database_unavailable": (503, "the database does not answer; retry later"),
}
AUTHENTICATED = ("unauthorized", "insufficient_scope", "database_unavailable")
MONEY_DIGITS = r"[0-9]{1,10}(\.[0-9]{1,2})?$"  # MAX_AMOUNT_KOP: a billion roubles


# The `{number}` of every card path: the card number or the phone in any format.
CARD_NUMBER = [{"in": "path", "name": "number", "required": True,
                "description": "Card number (E.164 digits, `79161234567`) or the phone in any "
                               "format, URL-encoded (`+7%20916%20123-45-67`).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 40,
                           "example": "79161234567"}}]


def fails(*codes: str, public: bool = False):
    """Document the error statuses of an operation, with the codes behind each."""
    by_status: dict[int, list[str]] = {}
    for code in codes + (() if public else AUTHENTICATED):
        by_status.setdefault(CODES[code][0], []).append(code)
    responses = {str(status): _error_response(names) for status, names in sorted(by_status.items())}
    return Blueprint.doc(responses=responses)


def _error_response(codes: list[str]) -> dict:
    return {"description": "; ".join(f"`{c}`: {CODES[c][1]}" for c in codes),
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


def _complete_errors(paths: dict) -> None:
    """The statuses every operation can answer whether or not its view says so: 503 always;
    401/403 behind a key; 422 for parameters or a body, 400 for a body, 404 for a path
    parameter. What a view documents itself (see `fails`) is kept as it is."""
    for path in paths.values():
        for method, operation in path.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            generic = [("503", ["database_unavailable"])]
            if operation.get("security", [{"bearer": []}]):
                generic += [("401", ["unauthorized"]), ("403", ["insufficient_scope"])]
            if operation.get("parameters") or path.get("parameters") or "requestBody" in operation:
                generic.append(("422", ["validation_error"]))
            if "requestBody" in operation:
                generic.append(("400", ["invalid_json"]))
            if path.get("parameters"):
                generic.append(("404", ["not_found"]))
            for status, codes in generic:
                responses.setdefault(status, _error_response(codes))


def _money_properties(self, field, ret, **kwargs) -> dict:
    if isinstance(field, Money):
        never = "" if field.allow_negative else " Never negative."
        sign = "^-?" if field.allow_negative else "^"
        return {"type": "string", "pattern": sign + MONEY_DIGITS, "example": "1500.50",
                "description": (field.metadata.get("description", "Roubles.") +
                                " A decimal string; answers always have two decimals, requests "
                                "may also send 1500, \"1500,50\", \"1 500,50\" or a JSON number. "
                                "A comma before exactly three digits (\"1,500\") is refused as "
                                "ambiguous." + never)}
    if isinstance(field, Percent):
        return {"type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]{1,2})?$", "example": "5.00"}
    return {}


class LoyaltyApi(Api):
    ERROR_SCHEMA = ErrorResponse
    DEFAULT_ERROR_RESPONSE_NAME = None  # every status is listed per operation (see fails)


def register(app) -> None:
    from api.views import (cards, client, client_site, data, docs, health, holds, notifications,
                           operations, product_rules, rules, webhooks)

    api = LoyaltyApi(app, spec_kwargs={"components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "A portal's API key (`flask --app api keys create`). "
                                  "Scopes: read, write, admin."}}},
        "security": [{"bearer": []}]})
    # ERROR_SCHEMA registers the "ErrorResponse" component that `fails` refers to.
    api.ma_plugin.converter.add_attribute_function(_money_properties)
    for module in (cards, operations, rules, notifications, health, data, client, client_site,
                   webhooks, product_rules, holds):
        api.register_blueprint(module.bp)
    _complete_errors(api.spec._paths)
    app.register_blueprint(docs.bp)
    app.extensions["loyalty_api"] = api
