"""Program rules of the caller's portal."""
from __future__ import annotations

from flask import g, request
from flask_smorest import Blueprint

from api.auth import require_api_key
from api.errors import ApiError
from api.ledger import rules

bp = Blueprint("rules", __name__, url_prefix="/api/v1/rules", description="Program rules")
bp.before_request(require_api_key)


@bp.route("", methods=["GET"])
@bp.response(200, rules.RulesSchema)
def get():
    return rules.SCHEMA.load(rules.stored_document(g.portal))


@bp.route("", methods=["PUT"])
@bp.doc(requestBody={"content": {"application/json": {"schema": "RulesSchema"}},
                     "description": "Any subset of the fields; the rest keep their value."})
@bp.response(200, rules.RulesSchema)
def put():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "Ожидается объект JSON.")
    document = rules.save(g.portal, body, actor=g.actor)
    return rules.SCHEMA.load(document)
