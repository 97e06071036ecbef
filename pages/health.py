"""Health (admins): the portal connection, the registrations check with "repair" (what
`flask --app api b24 register` does), and the delivery queues with "retry"."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import current_app, g
from peewee import fn

from activities.b24client import B24Error
from activities.registration import register
from api.clock import utcnow
from api.models import ActivityRun, Notification, Outbox
from background import lanes, leases
from notifications import delivery
from pages import checks, roles, web
from pages.frame import viewer_required
from background import dispatch

bp = web.blueprint("pages_health", __name__, url_prefix="/b24/app/health")
ROWS_MAX = 20


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def show():
    found, failure = None, None
    try:
        found = checks.registrations(web.b24_client(), web.b24_settings())
    except B24Error as exc:
        failure = f"{exc.code}: {exc.description}"
    mine = Outbox.portal == g.portal
    pending = Outbox.select().where(mine & (Outbox.status == "pending"))
    return web.render(
        "health.html", checks=found, failure=failure, portal=g.portal,
        verified_at=datetime.fromtimestamp(g.viewer.issued_at, timezone.utc).replace(tzinfo=None),
        delivered_at=Outbox.select(fn.MAX(Outbox.sent_at)).where(mine).scalar(),
        backlog=pending.count(), oldest=pending.order_by(Outbox.id).first(),
        failed=list(Outbox.select().where(mine & (Outbox.status == "failed"))
                    .order_by(Outbox.id.desc()).limit(ROWS_MAX)),
        failed_notices=list(Notification.select().where(
            (Notification.portal == g.portal) & Notification.channel.in_(delivery.CHANNELS)
            & Notification.status.in_(("failed", "unknown")))
            .order_by(Notification.id.desc()).limit(ROWS_MAX)),
        alerts=lanes.alerts(g.portal.id),
        dead_runs=list(ActivityRun.select().where((ActivityRun.portal == g.portal)
                                                  & (ActivityRun.status == "failed"))
                       .order_by(ActivityRun.id.desc()).limit(ROWS_MAX)))


@bp.route("/lanes/<lane>/resume", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def resume_lane(lane):
    """Bitrix24 support lifted the block (OVERLOAD_LIMIT): the portal's work resumes now."""
    if lane not in (lanes.B24, lanes.UNISENDER) or not lanes.resume(g.portal.id, lane):
        raise web.not_found("Нет такой остановки.")
    current_app.logger.info("%s lane of %s resumed by %s", lane, g.portal.member_id, g.viewer.actor)
    current_app.extensions["worker"].kick()
    return web.redirect_to("pages_health.show", "resumed")


@bp.route("/repair", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def repair():
    try:
        report = register(web.b24_client(), web.b24_settings(), g.portal.installed_by_user_id)
    except B24Error as exc:
        return web.redirect_to("pages_health.show", "repair_failed",
                               detail=f"{exc.code}: {exc.description}")
    current_app.logger.info("registrations of %s repaired by %s: %s", g.portal.member_id,
                            g.viewer.actor, report.summary())
    detail = "; ".join([report.summary()] + report.failures())
    return web.redirect_to("pages_health.show", "repaired" if report.ok else "repair_failed",
                           detail=detail)


@bp.route("/outbox/<int:row_id>/retry", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def retry_outbox(row_id):
    row = Outbox.get_or_none((Outbox.id == row_id) & (Outbox.portal == g.portal))
    if row is None:
        raise web.not_found("Нет такой доставки.")
    now = utcnow()
    # Deliver now rather than at the worker's next tick; the claim keeps the worker off it.
    if dispatch.retry(row.id, now) and _claim(row.id, now):
        dispatch.deliver(Outbox.get_by_id(row.id), web.b24_settings(), now=now,
                         session=current_app.extensions.get("b24_session"))
    done = Outbox.get_by_id(row.id).status == "sent"
    return web.redirect_to("pages_health.show", "retried" if done else "retry_failed")


def _claim(row_id: int, now: datetime) -> bool:
    """background.queue's claim for the one row a person asked for: keeps the worker off it."""
    free = Outbox.claimed_until.is_null() | (Outbox.claimed_until < now)
    return Outbox.update(claimed_until=now + timedelta(seconds=dispatch.CLAIM_S),
                         claimed_by=leases.me(), attempts=Outbox.attempts + 1).where(
        (Outbox.id == row_id) & (Outbox.status == "pending") & free).execute() == 1


@bp.route("/notifications/<int:row_id>/retry", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def retry_notice(row_id):
    row = Notification.get_or_none((Notification.id == row_id) & (Notification.portal == g.portal)
                                   & Notification.channel.in_(delivery.CHANNELS))
    if row is None:
        raise web.not_found("Нет такого уведомления.")
    now = utcnow()
    if delivery.retry(row.id, now):
        delivery.deliver(row.id, current_app.config, now=now)
    done = Notification.get_by_id(row.id).status == "sent"
    return web.redirect_to("pages_health.show", "retried" if done else "retry_failed")
