"""The portal's client site (API key): its public site id and the origins CORS allows."""
from __future__ import annotations

import json

from flask import g
from marshmallow import Schema, fields, validate

from api import client_login, schemas
from api.auth import require_api_key
from api.errors import ApiError
from api.views import fails
from api.jsonio import ApiBlueprint

bp = ApiBlueprint("client_site", __name__, url_prefix="/api/v1/client-site",
               description="Where clients log in themselves: the site id and its origins")
bp.before_request(require_api_key)
bp.required_scope = "admin"  # api.auth: settings and bulk personal data


class SiteChange(schemas.StrictSchema):
    enabled = fields.Boolean(truthy={True}, falsy={False})
    origins = fields.List(fields.String(validate=validate.Length(1, 200)),
                          metadata={"description": "Exact origins, e.g. https://shop.example.ru"})


class Site(Schema):
    site_id = fields.String(metadata={"description": "Public: the web page sends it to log in."})
    enabled = fields.Boolean()
    origins = fields.List(fields.String())
    updated_at = schemas.UtcDateTime()


def _shown(site) -> dict:
    return {**site.__data__, "origins": json.loads(site.origins)}


@bp.route("", methods=["GET"])
@bp.response(200, Site)
@fails("site_not_configured")
def show():
    site = client_login.site_for(g.portal)
    if site is None:
        raise ApiError(404, "site_not_configured", "Сайт для входа клиентов ещё не настроен: PUT.")
    return _shown(site)


@bp.route("", methods=["PUT"])
@bp.arguments(SiteChange)
@bp.response(200, Site)
def change(data):
    """Create the site (a new site id) or change it; `origins` replaces the list."""
    return _shown(client_login.save_site(g.portal, enabled=data.get("enabled"),
                                         origins=data.get("origins")))
