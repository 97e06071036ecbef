"""Notification settings of the caller's portal, and a card's notification log."""
from __future__ import annotations

from flask import g
from marshmallow import EXCLUDE, Schema, fields, validate

from api.auth import require_api_key, requires
from api.jsonio import ApiBlueprint, json_object
from api.ledger import cards
from api.models import Notification, NotificationSettings
from api.schemas import UtcDateTime
from api.documents import read_versioned
from api.views import CARD_NUMBER, fails
from api.views.rules import ETAG_DOC, IF_MATCH, if_match
from notifications import settings

bp = ApiBlueprint("notifications", __name__, url_prefix="/api/v1",
               description="Notification settings and log")
bp.before_request(require_api_key)
PAGE_MAX = 100


class NotificationOut(Schema):
    id = fields.Integer()
    channel = fields.String()
    template = fields.String()
    recipient = fields.String()
    subject = fields.String(allow_none=True)
    status = fields.String()
    provider_message_id = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    attempts = fields.Integer()
    created_at = UtcDateTime()
    sent_at = UtcDateTime(allow_none=True)


class NotificationPage(Schema):
    items = fields.List(fields.Nested(NotificationOut))
    page = fields.Integer()
    per_page = fields.Integer()
    has_more = fields.Boolean()


class SettingsOut(Schema):
    """As GET shows them; see the README for each field."""

    class Meta:
        unknown = EXCLUDE

    unisender_api_key = fields.String(allow_none=True, metadata={"example": "••••1a2b"})
    go_api_key = fields.String(allow_none=True)
    go_host = fields.String()
    sender_email = fields.String(allow_none=True)
    sender_name = fields.String()
    sms_sender = fields.String(allow_none=True)
    chat_method = fields.String()
    expiry_warning_days = fields.Integer()
    timeline = fields.Boolean()
    notices = fields.Dict(keys=fields.String(), values=fields.Boolean())
    templates = fields.Dict(keys=fields.String(), values=fields.Dict())


class PageQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    page = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, PAGE_MAX))


def tagged_current():
    document, version = read_versioned(NotificationSettings, g.portal,
                                       lambda: settings.load(g.portal))
    return settings.masked(document), 200, {"ETag": f'"{version}"'}


# Documented, not dumped through SettingsOut: a setting added later is never dropped.
SETTINGS_DOC = {"responses": {"200": {
    "description": "The settings, keys masked.", **ETAG_DOC,
    "content": {"application/json": {"schema": SettingsOut}}}}}


@bp.route("/settings/notifications", methods=["GET"])
@bp.doc(**SETTINGS_DOC)
@fails()
@requires("admin")
def get_settings():
    """The notification settings; UniSender keys only masked, ••••last4 (scope: admin)"""
    return tagged_current()


@bp.route("/settings/notifications", methods=["PUT"])
@bp.doc(requestBody={"content": {"application/json": {"schema": {"type": "object"}}},
                     "description": "Any subset of the fields; a masked key sent back is kept."},
        parameters=[IF_MATCH], **SETTINGS_DOC)
@fails("invalid_json", "validation_error", "version_conflict")
@requires("admin")
def put_settings():
    """Change notification settings (scope: admin)"""
    settings.save(g.portal, json_object(), actor=g.actor, expected_version=if_match())
    return tagged_current()


@bp.route("/cards/<number>/notifications", methods=["GET"], parameters=CARD_NUMBER)
@bp.arguments(PageQuery, location="query")
@bp.response(200, NotificationPage)
@fails("validation_error", "card_not_found")
def card_notifications(args, number):
    """A card's notification log, newest first (scope: read)"""
    card = cards.find_by_phone(g.portal, number)
    page, per_page = args["page"], args["per_page"]
    rows = list(Notification.select().where(Notification.card == card)
                .order_by(Notification.id.desc()).offset((page - 1) * per_page).limit(per_page + 1))
    return {"items": rows[:per_page], "page": page, "per_page": per_page,
            "has_more": len(rows) > per_page}
