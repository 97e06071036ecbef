"""Events: recorded in the transaction of what causes them, one per cause.

`emit` writes the event and one pending delivery per subscription that wants it, so an
event exists exactly when its movement does; the sender (api.webhooks.sender) delivers
later. No subscription for the type: nothing is written, the hot path pays one lookup.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from api import versions
from api.clock import utcnow
from api.ledger.money import format_kop
from api.models import Card, Portal, WebhookDelivery, WebhookEvent, WebhookSubscription

EVENTS = ("card.created", "bonus.accrued", "bonus.debited", "bonus.reversed", "bonus.adjusted",
          "bonus.expired", "tier.changed", "card.merged")
# Ledger entry kinds → event type (welcome and birthday bonuses are accruals too).
MOVEMENTS = {"accrual": "bonus.accrued", "welcome": "bonus.accrued", "birthday": "bonus.accrued",
             "debit": "bonus.debited", "reversal": "bonus.reversed",
             "adjustment": "bonus.adjusted", "expiry": "bonus.expired"}
KEY_MAX_LEN = 220


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def _load(portal_id: int) -> list[tuple[int, frozenset]]:
    rows = (WebhookSubscription.select(WebhookSubscription.id, WebhookSubscription.events)
            .where(WebhookSubscription.portal == portal_id).tuples())
    return [(sub_id, frozenset(json.loads(events))) for sub_id, events in rows]


def subscribers(portal, event_type: str, token=versions.UNKNOWN) -> list[int]:
    """The ids of the portal's subscriptions to `event_type`. With the settings token read
    with the card (api.versions; subscriptions bump it when they change) the list comes
    from this process's cache: a movement pays no statement for webhooks nobody wants."""
    portal_id = portal if isinstance(portal, int) else portal.id
    subs = versions.cached("webhooks", portal_id, token, lambda: _load(portal_id))
    return [sub_id for sub_id, events in subs if event_type in events]


def emit(portal: Portal, event_type: str, key: str, data: dict | Callable[[], dict], *,
         card_number: str | None = None, now: datetime | None = None,
         token=versions.UNKNOWN) -> WebhookEvent | None:
    """Record the event and its deliveries; the same key again records nothing. `data` may
    be a function that builds it: called only when someone subscribes to the type (every
    movement emits, and most portals subscribe to nothing)."""
    if event_type not in EVENTS:
        raise ValueError(f"unknown webhook event {event_type}")
    targets = subscribers(portal, event_type, token)
    if not targets:
        return None
    now, key = now or utcnow(), key[:KEY_MAX_LEN]
    data = data() if callable(data) else data
    inserted = WebhookEvent.insert(
        portal=portal, event_id=new_event_id(), key=key, type=event_type,
        card_number=card_number, created_at=now,
        data=json.dumps(data, ensure_ascii=False, default=str)).on_conflict_ignore().execute()
    event = WebhookEvent.get((WebhookEvent.portal == portal) & (WebhookEvent.key == key))
    if inserted:
        WebhookDelivery.insert_many(
            [{"subscription": sub_id, "event": event.id, "stream": card_number or "",
              "created_at": now, "next_attempt_at": now} for sub_id in targets]
        ).on_conflict_ignore().execute()
    return event


def shown(value):
    """Kopecks as the API shows money ("1500.00"), Decimals as strings."""
    if isinstance(value, dict):
        return {(k[:-4] if k.endswith("_kop") else k): (format_kop(v) if k.endswith("_kop")
                                                         and isinstance(v, int) else shown(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return str(value) if isinstance(value, Decimal) else value


def card_data(card: Card) -> dict:
    return {"number": card.number, "contact_id": card.contact_id, "status": card.status,
            "tier": card.tier, "balance": format_kop(card.balance_kop),
            "purchases": format_kop(card.purchases_kop)}


def movement(portal: Portal, card: Card, kind: str, result: dict, key: str) -> None:
    """What a ledger movement tells subscribers: its bonus event, and a tier change."""
    event_type, token = MOVEMENTS.get(kind), getattr(card, "settings_token", versions.UNKNOWN)
    if event_type:
        emit(portal, event_type, f"{kind}:{key}",
             lambda: {"card": card_data(card), **shown(result)},
             card_number=card.number, token=token)
    before = result.get("tier_before")
    if before and before != result.get("tier"):
        emit(portal, "tier.changed", f"tier:{key}",
             lambda: {"card": card_data(card), "tier_before": before, "tier": result.get("tier")},
             card_number=card.number, token=token)


def card_created(portal: Portal, card_id: int) -> None:
    """Called in the card's transaction, after its welcome bonus: read it back only when
    someone listens."""
    if subscribers(portal, "card.created"):
        card = Card.get_by_id(card_id)
        emit(portal, "card.created", f"card:{card.number}:{card.id}", {"card": card_data(card)},
             card_number=card.number)


def card_merged(portal: Portal, source: Card, target_id: int) -> None:
    """Called in the merge's transaction: `source` was closed into the card `target_id`."""
    if subscribers(portal, "card.merged"):
        target = Card.get_by_id(target_id)
        emit(portal, "card.merged", f"merge:card{source.id}:into{target.id}",
             {"card": card_data(target), "merged": {"number": source.number,
                                                    "contact_id": source.contact_id}},
             card_number=target.number)
