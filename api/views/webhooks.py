"""Webhook subscriptions of the portal (API key): create, change, pause, log, replay."""
from __future__ import annotations

import json

from flask import current_app, g
from marshmallow import Schema, fields, validate

from api import schemas
from api.auth import require_api_key
from api.jsonio import ApiBlueprint
from api.webhooks import subscriptions
from api.webhooks.events import EVENTS

bp = ApiBlueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
               description="Webhooks out: signed events about cards and bonuses")
bp.before_request(require_api_key)
bp.required_scope = "admin"  # api.auth: settings and bulk personal data


class SubscriptionIn(schemas.StrictSchema):
    url = fields.String(required=True, validate=validate.Length(1, 2000))
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)), required=True,
                         validate=validate.Length(1, len(EVENTS)))
    description = fields.String(validate=validate.Length(max=200), allow_none=True)


class SubscriptionChange(schemas.StrictSchema):
    url = fields.String(validate=validate.Length(1, 2000))
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)),
                         validate=validate.Length(1, len(EVENTS)))
    description = fields.String(validate=validate.Length(max=200), allow_none=True)
    status = fields.String(validate=validate.OneOf(["active", "paused"]))


class Subscription(Schema):
    id = fields.Integer()
    url = fields.String()
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    status = fields.String()
    paused_reason = fields.String(allow_none=True)
    failures = fields.Integer()
    created_at = schemas.UtcDateTime()
    secret = fields.String(metadata={"description": "Only in the answer to the creation."})


class SubscriptionList(Schema):
    items = fields.List(fields.Nested(Subscription))


class Attempt(Schema):
    id = fields.Integer()
    at = schemas.UtcDateTime()
    event_id = fields.String()
    type = fields.String()
    ok = fields.Boolean()
    status_code = fields.Integer(allow_none=True)
    response_ms = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    delivery_status = fields.String()
    delivery_attempts = fields.Integer(metadata={"description": "Tries of this delivery so far."})
    next_attempt_at = schemas.UtcDateTime(allow_none=True,
                                          metadata={"description": "Next retry, while pending."})


class AttemptPage(schemas.Page):
    items = fields.List(fields.Nested(Attempt))


class PageQuery(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class Replayed(Schema):
    event_id = fields.String()
    status = fields.String()


def _shown(sub, secret: str | None = None) -> dict:
    out = {**sub.__data__, "events": json.loads(sub.events)}
    out.pop("secret")
    if secret:
        out["secret"] = secret
    return out


@bp.route("", methods=["GET"])
@bp.response(200, SubscriptionList)
def index():
    rows = g.portal.webhooks.order_by(subscriptions.WebhookSubscription.id)
    return {"items": [_shown(sub) for sub in rows]}


@bp.route("", methods=["POST"])
@bp.arguments(SubscriptionIn)
@bp.response(201, Subscription)
def create(data):
    """Subscribe a URL; the answer carries the signing secret, shown only now."""
    sub, secret = subscriptions.create(g.portal, data, current_app.config)
    return _shown(sub, secret)


@bp.route("/<int:sub_id>", methods=["GET"])
@bp.response(200, Subscription)
def show(sub_id):
    return _shown(subscriptions.get(g.portal, sub_id))


@bp.route("/<int:sub_id>", methods=["PATCH"])
@bp.arguments(SubscriptionChange)
@bp.response(200, Subscription)
def change(data, sub_id):
    """Change the URL or events; `status` pauses or resumes (waiting deliveries go then)."""
    return _shown(subscriptions.change(g.portal, sub_id, data, current_app.config))


@bp.route("/<int:sub_id>", methods=["DELETE"])
@bp.response(204)
def delete(sub_id):
    subscriptions.delete(g.portal, sub_id)


@bp.route("/<int:sub_id>/attempts", methods=["GET"])
@bp.arguments(PageQuery, location="query")
@bp.response(200, AttemptPage)
def attempts(args, sub_id):
    """The delivery log, newest first: status and response time of every try."""
    sub = subscriptions.get(g.portal, sub_id)
    items, more = subscriptions.attempts(sub, page=args["page"], per_page=args["per_page"])
    return {"items": items, "page": args["page"], "per_page": args["per_page"], "has_more": more}


@bp.route("/<int:sub_id>/events/<event_id>/replay", methods=["POST"])
@bp.response(202, Replayed)
def replay(sub_id, event_id):
    """Send one event again, with its id and body unchanged."""
    delivery = subscriptions.replay(subscriptions.get(g.portal, sub_id), event_id)
    return {"event_id": event_id, "status": delivery.status}
