"""Subscriptions: what the API manages. The secret is shown once, at creation."""
from __future__ import annotations

import json

from peewee import fn

from api import versions
from api.clock import utcnow
from api.db import db
from api.ledger.errors import InvalidInput, NotFound
from api.models import Portal, WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from api.schemas import INT32_MAX
from api.webhooks import signing, urls
from api.webhooks.events import EVENTS

SUBSCRIPTIONS_MAX = 10
PAGE_MAX = 100


class SubscriptionNotFound(NotFound):
    code = "webhook_not_found"


class EventNotFound(NotFound):
    code = "webhook_event_not_found"


def _checked_url(url, config) -> str:
    try:
        urls.check_target(url, config)
    except urls.UnsafeUrl as exc:
        raise InvalidInput({"url": str(exc)}) from None
    return url.strip()


def _checked_events(events) -> str:
    if not isinstance(events, list) or not events or not set(events) <= set(EVENTS):
        raise InvalidInput({"events": "Непустой список из: " + ", ".join(EVENTS)})
    return json.dumps(sorted(set(events)))


def create(portal: Portal, data: dict, config) -> tuple[WebhookSubscription, str]:
    url, events = _checked_url(data.get("url"), config), _checked_events(data.get("events"))
    with db.atomic():
        if WebhookSubscription.select().where(WebhookSubscription.portal == portal).count() \
                >= SUBSCRIPTIONS_MAX:
            raise InvalidInput({"url": f"Не больше {SUBSCRIPTIONS_MAX} подписок на портал."})
        secret = signing.new_secret()
        sub = WebhookSubscription.create(portal=portal, url=url, events=events, secret=secret,
                                         description=data.get("description"))
        versions.bump(portal)  # the movements' cached lists of subscribers start over
    return sub, secret


def get(portal: Portal, sub_id: int) -> WebhookSubscription:
    # An id past the column is no subscription, for every caller (SQLite would raise
    # OverflowError on one past 64 bits, PostgreSQL a DataError past 32: both a 500).
    sub = None if not 0 < sub_id <= INT32_MAX else WebhookSubscription.get_or_none(
        (WebhookSubscription.id == sub_id) & (WebhookSubscription.portal == portal))
    if sub is None:
        raise SubscriptionNotFound(f"Подписка {sub_id} не найдена")
    return sub


def change(portal: Portal, sub_id: int, data: dict, config) -> WebhookSubscription:
    sub = get(portal, sub_id)
    if "url" in data:
        sub.url = _checked_url(data["url"], config)
    if "events" in data:
        sub.events = _checked_events(data["events"])
    if "description" in data:
        sub.description = data["description"]
    if data.get("status") == "active" and sub.status != "active":
        # Resumed: the waiting deliveries go now, and the failure count starts over.
        sub.status, sub.paused_reason, sub.failures, sub.failing_since = "active", None, 0, None
        WebhookDelivery.update(next_attempt_at=utcnow()).where(
            (WebhookDelivery.subscription == sub) & (WebhookDelivery.status == "pending")).execute()
    elif data.get("status") == "paused":
        sub.status, sub.paused_reason = "paused", "Приостановлена вручную"
    sub.updated_at = utcnow()
    with db.atomic():
        sub.save()
        versions.bump(portal)
    return sub


def delete(portal: Portal, sub_id: int) -> None:
    with db.atomic():
        get(portal, sub_id).delete_instance(recursive=True)
        versions.bump(portal)


def listing(portal: Portal) -> list[WebhookSubscription]:
    """The portal's subscriptions, each with `last_attempt` (its latest try, or None) and
    `event_list` (its events, decoded)."""
    subs = list(WebhookSubscription.select().where(WebhookSubscription.portal == portal)
                .order_by(WebhookSubscription.id))
    latest = (WebhookAttempt.select(fn.MAX(WebhookAttempt.id))
              .where(WebhookAttempt.subscription.in_([s.id for s in subs]))
              .group_by(WebhookAttempt.subscription))
    last = {a.subscription_id: a for a in WebhookAttempt.select().where(
        WebhookAttempt.id.in_(latest))} if subs else {}
    for sub in subs:
        sub.last_attempt, sub.event_list = last.get(sub.id), json.loads(sub.events)
    return subs


def attempts(sub: WebhookSubscription, *, page: int, per_page: int):
    """The delivery log, newest first: each try with its status and response time, and
    where its delivery stands (tries so far, the next retry while it is pending)."""
    per_page = max(1, min(per_page, PAGE_MAX))
    rows = list(WebhookAttempt.select(WebhookAttempt, WebhookDelivery, WebhookEvent)
                .join(WebhookDelivery).join(WebhookEvent)
                .where(WebhookAttempt.subscription == sub)
                .order_by(WebhookAttempt.id.desc())
                .offset((max(page, 1) - 1) * per_page).limit(per_page + 1))
    items = [{"id": a.id, "at": a.at, "status_code": a.status_code,
              "response_ms": a.response_ms, "error": a.error, "ok": a.error is None,
              "event_id": a.delivery.event.event_id, "type": a.delivery.event.type,
              "delivery_status": a.delivery.status, "delivery_attempts": a.delivery.attempts,
              "next_attempt_at": a.delivery.next_attempt_at
              if a.delivery.status == "pending" else None} for a in rows[:per_page]]
    return items, len(rows) > per_page


def replay(sub: WebhookSubscription, event_id: str) -> WebhookDelivery:
    """Send one event again (same id and body): a fresh day of retries."""
    event = WebhookEvent.get_or_none((WebhookEvent.event_id == event_id)
                                     & (WebhookEvent.portal == sub.portal_id))
    if event is None:
        raise EventNotFound(f"Событие {event_id} не найдено")
    now = utcnow()
    with db.atomic():
        WebhookDelivery.insert(subscription=sub, event=event, stream=event.card_number or "",
                               created_at=now, next_attempt_at=now).on_conflict(
            conflict_target=[WebhookDelivery.subscription, WebhookDelivery.event],
            update={WebhookDelivery.status: "pending", WebhookDelivery.attempts: 0,
                    WebhookDelivery.created_at: now, WebhookDelivery.next_attempt_at: now,
                    WebhookDelivery.claimed_until: None}).execute()
    return WebhookDelivery.get((WebhookDelivery.subscription == sub)
                               & (WebhookDelivery.event == event))
