"""Program rules of the caller's portal.

GET answers an ETag (the stored version); a PUT that sends it back as If-Match is
refused with 409 `version_conflict` when someone saved in between.
"""
from __future__ import annotations

from flask import g, request

from api.auth import require_api_key, requires
from api.jsonio import ApiBlueprint, json_object
from api.ledger import rules
from api.views import fails

bp = ApiBlueprint("rules", __name__, url_prefix="/api/v1/rules", description="Program rules")
bp.before_request(require_api_key)

ETAG_DOC = {"headers": {"ETag": {"description": "The stored version: send it back as If-Match.",
                                 "schema": {"type": "string"}}}}
IF_MATCH = {"in": "header", "name": "If-Match", "required": False,
            "description": "The ETag of the version you edited: a newer save makes this 409 "
                           "`version_conflict` instead of overwriting it.",
            "schema": {"type": "string", "maxLength": 64}}


def if_match() -> str | None:
    value = request.headers.get("If-Match")
    return value.strip().strip('"') if value else None


def tagged(document: dict, version: str):
    return rules.SCHEMA.load(document), 200, {"ETag": f'"{version}"'}


def tagged_current():
    return tagged(*rules.versioned(g.portal))


@bp.route("", methods=["GET"])
@bp.response(200, rules.RulesSchema, **ETAG_DOC)
@fails()
def get():
    """The program rules (scope: read)"""
    return tagged_current()


@bp.route("", methods=["PUT"])
@bp.doc(requestBody={"content": {"application/json": {"schema": "RulesSchema"}},
                     "description": "Any subset of the fields; the rest keep their value."},
        parameters=[IF_MATCH])
@bp.response(200, rules.RulesSchema, **ETAG_DOC)
@fails("invalid_json", "validation_error", "version_conflict")
@requires("admin")
def put():
    """Change the program rules (scope: admin)

    Validated as a whole; applies to the next operation, never to past entries.
    """
    rules.save(g.portal, json_object(), actor=g.actor, expected_version=if_match())
    return tagged_current()
