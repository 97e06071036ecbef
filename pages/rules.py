"""Program rules (admins): tiers, rounding, lifetime, limits, bonuses, required fields,
the client-category field; and who else may use the pages.

The form goes through the same validation as `PUT /api/v1/rules` (api.ledger.rules);
errors come back beside their fields and nothing is written. The form carries the
version it was filled from (the API's If-Match): when another admin saved in between,
nothing is written and the page says so, so a stale form never silently undoes them. A saved change applies to
the next operation: the ledger reads the rules when it runs and never rewrites entries.
"""
from __future__ import annotations

import re

from flask import g, request

from api.db import db
from api.documents import VersionConflict
from api.ledger import rules as rules_mod
from api.ledger.errors import InvalidInput
from api.models import ProgramRules
from pages import permissions, roles, web
from pages.frame import viewer_required

bp = web.blueprint("pages_rules", __name__, url_prefix="/b24/app/rules")
BLANK_ROWS = 2  # empty tier rows under the existing ones: where a new tier is typed
FIELD_LABELS = {"last_name": "фамилия", "first_name": "имя", "middle_name": "отчество",
                "phone": "мобильный телефон", "client_category": "категория клиента",
                "email": "e-mail", "birthdate": "дата рождения"}
_DAYS = re.compile(r"[0-9]{1,6}")


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def show():
    document, version = rules_mod.versioned(g.portal)
    return _page(_values_of(document), {}, version=version)


@bp.route("", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def save():
    values = _values_from(request.form)
    document, errors = _document(values)
    version = web.form_version()
    try:
        if errors:  # still validate the rest, so every bad field is marked at once
            rules_mod.validate_document({**rules_mod.stored_document(g.portal), **document})
        else:
            with db.atomic():
                rules_mod.save(g.portal, document, actor=g.viewer.actor,
                               expected_version=version)
    except InvalidInput as exc:
        errors = {**exc.fields, **errors}
    except VersionConflict as exc:
        # The typed values stay, under the new version: saving again is a decision.
        return _page(values, {"_schema": web.STALE_FORM}, 409, version=exc.details["current_version"])
    if errors:
        return _page(values, errors, 422, version=version)
    return web.redirect_to("pages_rules.show", "saved")


@bp.route("/access", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def save_access():
    access = {name: request.form.get(name) == "on"
              for name in (permissions.VIEW_CARDS, permissions.ADJUST)}
    with db.atomic():
        permissions.save(g.portal, {"access": access}, actor=g.viewer.actor)
    return web.redirect_to("pages_rules.show", "access_saved")


def _page(values: dict, errors: dict, status: int = 200, *, version: str | None = None):
    rows = values["tiers"] + [{"name": "", "threshold": "", "percent": ""}] * BLANK_ROWS
    changed = ProgramRules.get_or_none(ProgramRules.portal == g.portal)
    return web.render("rules.html", status, values=values, rows=rows, errors=errors,
                      labels=FIELD_LABELS, access=permissions.load(g.portal)["access"],
                      changed=changed, version=version)


def _values_of(document: dict) -> dict:
    """The stored document as form strings."""
    values = {k: ("" if v is None else str(v)) for k, v in document.items()
              if k not in ("tiers", "required_fields")}
    values["tiers"] = [{k: str(t[k]) for k in ("name", "threshold", "percent")}
                       for t in document["tiers"]]
    values["required_fields"] = list(document["required_fields"])
    return values


def _values_from(form) -> dict:
    """What was typed, kept as typed so a rejected form comes back unchanged."""
    values = {k: (form.get(k) or "").strip()[:200] for k in (
        "rounding_mode", "rounding_unit", "bonus_lifetime_days", "max_debit_share_percent",
        "welcome_bonus", "birthday_bonus", "client_category_field")}
    values["required_fields"] = [f for f in form.getlist("required_fields") if f in FIELD_LABELS]
    rows = []
    for i in range(rules_mod.TIERS_MAX + BLANK_ROWS):
        row = {k: (form.get(f"tiers-{i}-{k}") or "").strip()[:100]
               for k in ("name", "threshold", "percent")}
        if any(row.values()):  # a fully blank row is how a tier is removed
            rows.append(row)
    values["tiers"] = rows
    return values


def _document(values: dict) -> tuple[dict, dict]:
    """The rules document to validate; and the errors only the form can have."""
    document = {k: v for k, v in values.items() if k != "bonus_lifetime_days"}
    document["client_category_field"] = values["client_category_field"] or None
    errors = {}
    if _DAYS.fullmatch(values["bonus_lifetime_days"]):
        document["bonus_lifetime_days"] = int(values["bonus_lifetime_days"])
    else:
        errors["bonus_lifetime_days"] = "Целое число дней от 1 до 3650."
    return document, errors
