"""Webhooks (admins): the portal's subscriptions, their delivery log, replay of an event.

Every action calls the same service as `/api/v1/webhooks` (api.webhooks.subscriptions):
one validation for both, so the https rule and the private-address check refuse a URL
here exactly as the API does, with the reason beside the field. The signing secret is
shown once, on the page that answers the creation (never in a URL, never logged), and
never again: a lost secret means a new subscription.
"""
from __future__ import annotations

from flask import current_app, g, request

from api.ledger.errors import InvalidInput, NotFound
from api.webhooks import subscriptions
from api.webhooks.events import EVENTS
from pages import roles, web
from pages.frame import viewer_required

bp = web.blueprint("pages_webhooks", __name__, url_prefix="/b24/app/webhooks")
LOG_PER_PAGE = 50
EVENT_ID_MAX_LEN = 40


def _events() -> list[str]:
    return [e for e in request.form.getlist("events") if e in EVENTS]


def _sub(sub_id: int):
    try:
        return subscriptions.get(g.portal, sub_id)
    except NotFound:
        raise web.not_found("Нет такой подписки.") from None


def _list_page(status: int = 200, errors: dict | None = None, values: dict | None = None,
               **context):
    return web.render("webhooks.html", status, active="webhooks", events=EVENTS,
                      subs=subscriptions.listing(g.portal), errors=errors or {},
                      values=values or {}, **context)


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def show():
    return _list_page()


@bp.route("", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def create():
    values = {"url": web.form_text("url", 2000), "events": _events(),
              "description": web.form_text("description", 200) or None}
    try:
        sub, secret = subscriptions.create(g.portal, values, current_app.config)
    except InvalidInput as exc:
        return _list_page(422, errors=exc.fields, values=values)
    current_app.logger.info("webhook subscription %s of %s created by %s", sub.id,
                            g.portal.member_id, g.viewer.actor)
    # Rendered, not redirected: the secret must not travel on in a URL.
    return _list_page(created=sub, secret=secret)


@bp.route("/<int:sub_id>/events", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def change_events(sub_id):
    _sub(sub_id)
    try:
        subscriptions.change(g.portal, sub_id, {"events": _events()}, current_app.config)
    except InvalidInput as exc:
        return _list_page(422, errors={f"events-{sub_id}": exc.fields.get("events", "")})
    return web.redirect_to("pages_webhooks.show", "webhook_saved")


@bp.route("/<int:sub_id>/pause", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def pause(sub_id):
    return _set_status(sub_id, "paused", "webhook_paused")


@bp.route("/<int:sub_id>/resume", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def resume(sub_id):
    return _set_status(sub_id, "active", "webhook_resumed")


def _set_status(sub_id: int, status: str, message: str):
    _sub(sub_id)
    subscriptions.change(g.portal, sub_id, {"status": status}, current_app.config)
    if status == "active":
        current_app.extensions["worker"].wake()  # the waiting deliveries go now
    return web.redirect_to("pages_webhooks.show", message)


@bp.route("/<int:sub_id>/delete", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def delete(sub_id):
    sub = _sub(sub_id)
    if not web.confirmed():
        return web.confirm("удалить подписку", [("Адрес", sub.url)],
                           web.page_url("pages_webhooks.delete", sub_id=sub_id), {},
                           web.page_url("pages_webhooks.show"))
    subscriptions.delete(g.portal, sub_id)
    current_app.logger.info("webhook subscription %s of %s deleted by %s", sub_id,
                            g.portal.member_id, g.viewer.actor)
    return web.redirect_to("pages_webhooks.show", "webhook_deleted")


@bp.route("/<int:sub_id>", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def log(sub_id):
    return _log_page(_sub(sub_id))


def _log_page(sub, status: int = 200, errors: dict | None = None):
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) <= 100_000 else 1
    items, more = subscriptions.attempts(sub, page=page, per_page=LOG_PER_PAGE)
    return web.render("webhook_log.html", status, active="webhooks", sub=sub, items=items,
                      page=page, more=more, errors=errors or {})


@bp.route("/<int:sub_id>/replay", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def replay(sub_id):
    sub = _sub(sub_id)
    event_id = web.form_text("event_id", EVENT_ID_MAX_LEN)
    try:
        subscriptions.replay(sub, event_id)
    except NotFound:
        return _log_page(sub, 404, {"event_id": f"Событие «{event_id}» не найдено."})
    current_app.extensions["worker"].wake()
    return web.redirect_to("pages_webhooks.log", "webhook_replayed", sub_id=sub_id)
