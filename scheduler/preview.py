"""What the next outbox pass would work, read without claiming or sending anything
(`scheduler run-once outbox --dry-run`). Webhook deliveries are not previewed."""
from __future__ import annotations

from datetime import datetime

from api.models import ActivityRun, B24Event, Notification, Outbox, Portal
from background import lanes
from notifications.delivery import CHANNELS
from scheduler.sync import CONTACT_EVENT

LINES_MAX = 50  # a preview of a long queue shows its head and says how many in all


def _due(model, now: datetime, portal: Portal | None):
    """Pending and due, as a claim would find them (unclaimed or the claim lapsed)."""
    free = model.claimed_until.is_null() | (model.claimed_until < now)
    query = model.select(model.id).where((model.status == "pending")
                                         & (model.next_attempt_at <= now) & free)
    return query if portal is None else query.where(model.portal == portal)


def _messages(now: datetime, portal: Portal | None):
    return _due(Notification, now, portal).where(Notification.channel.in_(CHANNELS))


def _events(portal: Portal | None):
    query = B24Event.select(B24Event.id).where((B24Event.event == CONTACT_EVENT)
                                               & B24Event.processed_at.is_null())
    return query if portal is None else query.where(B24Event.portal == portal)


def _b24_due(model, now: datetime, portal: Portal | None):
    """Bitrix24 work of portals whose lane is not paused (a rate limit, an overload)."""
    return _due(model, now, portal).where(~model.portal.in_(lanes.paused_ids(lanes.B24, now)))


def outbox_due(now: datetime, portal: Portal | None = None) -> dict[str, int]:
    return {"activity run(s)": _b24_due(ActivityRun, now, portal).count(),
            "Bitrix24 batch(es)": _b24_due(Outbox, now, portal).count(),
            "message(s)": _messages(now, portal).count(),
            "contact event(s)": _events(portal).count()}


def outbox_lines(now: datetime, portal: Portal | None = None) -> list[str]:
    """One line per due row, oldest first within each queue."""
    lines = [f"activity run {r.id}: {r.code}" for r in ActivityRun.select().where(
        ActivityRun.id.in_(_b24_due(ActivityRun, now, portal))).order_by(ActivityRun.id)
        .limit(LINES_MAX)]
    lines += [f"outbox {r.id}: {r.key}" for r in Outbox.select().where(
        Outbox.id.in_(_b24_due(Outbox, now, portal))).order_by(Outbox.id).limit(LINES_MAX)]
    lines += [f"message {r.id}: {r.channel} {r.template}" for r in Notification.select().where(
        Notification.id.in_(_messages(now, portal))).order_by(Notification.id).limit(LINES_MAX)]
    return lines
