"""Earning rules per product and product section (api.product_rules)."""
from __future__ import annotations

from flask import g
from marshmallow import Schema, fields

from api import product_rules
from api.auth import require_api_key, requires
from api.jsonio import ApiBlueprint, json_object
from api.views import fails

bp = ApiBlueprint("product_rules", __name__, url_prefix="/api/v1/rules/products",
                  description="Percent, exclusion and bonus share per product or section")
bp.before_request(require_api_key)


class RuleSet(Schema):
    rules = fields.List(fields.Nested(product_rules.RuleSchema))


@bp.route("", methods=["GET"])
@bp.response(200, RuleSet)
@fails()
def show():
    """The earning rules per product and section (scope: read)"""
    return {"rules": product_rules.load(g.portal)}


@bp.route("", methods=["PUT"])
@bp.doc(requestBody={"content": {"application/json": {"schema": RuleSet}}})
@bp.response(200, RuleSet)
@fails("invalid_json", "validation_error")
@requires("admin")
def replace():
    """Replace the earning rules per product and section (scope: admin)

    A product rule wins over its section's; a row no rule names earns the tier's percent.
    """
    return {"rules": product_rules.save(g.portal, json_object(), g.actor)}
