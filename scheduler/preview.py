"""What the next outbox pass would work, read without claiming or sending anything
(`scheduler run-once outbox --dry-run`)."""
from __future__ import annotations

from datetime import datetime

from api import queue
from api.models import ActivityRun, B24Event, Notification, Outbox, Portal
from notifications.delivery import CHANNELS
from scheduler.sync import CONTACT_EVENT

LINES_MAX = 50  # a preview of a long queue shows its head and says how many in all


def _messages(now: datetime, portal: Portal | None):
    return queue.due(Notification, now, portal).where(Notification.channel.in_(CHANNELS))


def _events(portal: Portal | None):
    query = B24Event.select(B24Event.id).where((B24Event.event == CONTACT_EVENT)
                                               & B24Event.processed_at.is_null())
    return query if portal is None else query.where(B24Event.portal == portal)


def outbox_due(now: datetime, portal: Portal | None = None) -> dict[str, int]:
    return {"activity run(s)": queue.due(ActivityRun, now, portal).count(),
            "Bitrix24 batch(es)": queue.due(Outbox, now, portal).count(),
            "message(s)": _messages(now, portal).count(),
            "contact event(s)": _events(portal).count()}


def outbox_lines(now: datetime, portal: Portal | None = None) -> list[str]:
    """One line per due row, oldest first within each queue."""
    lines = [f"activity run {r.id}: {r.code}" for r in ActivityRun.select().where(
        ActivityRun.id.in_(queue.due(ActivityRun, now, portal))).order_by(ActivityRun.id)
        .limit(LINES_MAX)]
    lines += [f"outbox {r.id}: {r.key}" for r in Outbox.select().where(
        Outbox.id.in_(queue.due(Outbox, now, portal))).order_by(Outbox.id).limit(LINES_MAX)]
    lines += [f"message {r.id}: {r.channel} {r.template}" for r in Notification.select().where(
        Notification.id.in_(_messages(now, portal))).order_by(Notification.id).limit(LINES_MAX)]
    return lines
