"""What a portal's non-admin users may do in the pages (admins may do everything).

Stored per portal as JSON in `PortalSettings` ({"access": {"view_cards", "adjust"}}),
a small table for page-level settings that belong to no other part.
"""
from __future__ import annotations

import json

from marshmallow import Schema, fields

from api import documents
from api.models import Portal, PortalSettings


VIEW_CARDS, ADJUST = "view_cards", "adjust"
DEFAULTS = {"access": {VIEW_CARDS: False, ADJUST: False}}


class AccessSchema(Schema):
    view_cards = fields.Boolean(required=True, truthy={True}, falsy={False})
    adjust = fields.Boolean(required=True, truthy={True}, falsy={False})


class SettingsSchema(Schema):
    access = fields.Nested(AccessSchema, required=True)


SCHEMA = SettingsSchema()


def load(portal: Portal) -> dict:
    """The portal's page settings over the defaults (nobody but admins until allowed)."""
    row = PortalSettings.get_or_none(PortalSettings.portal == portal)
    stored = json.loads(row.data) if row else {}
    return {"access": {**DEFAULTS["access"], **stored.get("access", {})}}


def save(portal: Portal, changes: dict, actor: str) -> dict:
    """Validate the whole merged document, then upsert it; InvalidInput on bad values."""
    current = load(portal)
    merged = {"access": {**current["access"], **(changes.get("access") or {})}}
    document = SCHEMA.dump(documents.validated(SCHEMA, merged))
    documents.upsert(PortalSettings, portal, document, actor)
    return document
