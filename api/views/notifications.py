"""Notification settings of the caller's portal, and a card's notification log."""
from __future__ import annotations

from flask import g, request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate

from api.auth import require_api_key
from api.errors import ApiError
from api.ledger import cards
from api.models import Notification
from notifications import settings

bp = Blueprint("notifications", __name__, url_prefix="/api/v1",
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
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)


class NotificationPage(Schema):
    items = fields.List(fields.Nested(NotificationOut))
    page = fields.Integer()
    per_page = fields.Integer()
    has_more = fields.Boolean()


class PageQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    page = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, PAGE_MAX))


@bp.route("/settings/notifications", methods=["GET"])
def get_settings():
    """The settings; the UniSender keys only masked (••••last4)."""
    return settings.masked(settings.load(g.portal))


@bp.route("/settings/notifications", methods=["PUT"])
@bp.doc(requestBody={"content": {"application/json": {"schema": {"type": "object"}}},
                     "description": "Any subset of the fields; a masked key sent back is kept."})
def put_settings():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "Ожидается объект JSON.")
    return settings.masked(settings.save(g.portal, body, actor=g.actor))


@bp.route("/cards/<number>/notifications", methods=["GET"])
@bp.arguments(PageQuery, location="query")
@bp.response(200, NotificationPage)
def card_notifications(args, number):
    card = cards.find_by_phone(g.portal, number)
    page, per_page = args["page"], args["per_page"]
    rows = list(Notification.select().where(Notification.card == card)
                .order_by(Notification.id.desc()).offset((page - 1) * per_page).limit(per_page + 1))
    return {"items": rows[:per_page], "page": page, "per_page": per_page,
            "has_more": len(rows) > per_page}
