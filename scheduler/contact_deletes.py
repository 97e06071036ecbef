"""ONCRMCONTACTDELETE (online or from the offline queue): is it a merge or a delete?

Bitrix24 says nothing about merges. A merged-away contact is deleted and its phone now
sits on the survivor, so for each deleted contact that had a card we ask
`crm.duplicate.findbycomm` (type PHONE, entity_type CONTACT, at most 20 values; up to 50
of these in one batch) which contacts hold the card's phone now:

- exactly one other contact: the card follows it (api.data.merges.follow);
- none: the contact is simply gone (api.data.merges.orphan);
- several: we cannot tell which one is the client; the card is treated as orphaned
  and the manager decides (a merge by hand is on the client's page).
An event whose portal could not be asked stays pending for the next tick.
"""
from __future__ import annotations

import logging
from datetime import datetime

from activities.b24client import BATCH_COMMANDS_MAX, B24Error, classify
from activities.portals import B24Settings, client_for
from api.clock import utcnow
from api.data import merges
from api.models import B24Event, Card, Portal
from background import lanes

log = logging.getLogger(__name__)
DELETE_EVENT = "ONCRMCONTACTDELETE"
ACTOR = "system:crm-merge"


def process_deletes(settings: B24Settings, *, now: datetime | None = None, session=None) -> int:
    """Settle pending delete events, at most one batch per portal per tick."""
    now = now or utcnow()
    pending = (B24Event.select(B24Event.portal).distinct()
               .where((B24Event.event == DELETE_EVENT) & B24Event.processed_at.is_null()
                      & ~B24Event.portal.in_(lanes.paused_ids(lanes.B24, now))))
    return sum(_portal(Portal.get_by_id(row.portal_id), settings, now, session)
               for row in pending)


def _portal(portal: Portal, settings: B24Settings, now: datetime, session) -> int:
    events = list(B24Event.select().where(
        (B24Event.portal == portal) & (B24Event.event == DELETE_EVENT)
        & B24Event.processed_at.is_null()).order_by(B24Event.id).limit(BATCH_COMMANDS_MAX))
    cards = {c.contact_id: c for c in Card.select().where(
        (Card.portal == portal) & Card.contact_id.in_([e.entity_id for e in events]))}
    asks = {f"d_{e.id}": ("crm.duplicate.findbycomm", {
        "entity_type": "CONTACT", "type": "PHONE", "values": ["+" + cards[e.entity_id].number]})
        for e in events if e.entity_id in cards and cards[e.entity_id].status == "active"}
    result = None
    if asks and portal.status == "active" and portal.access_token:
        try:
            result = client_for(portal, settings, session).batch(asks)
        except B24Error as exc:
            log.warning("contact deletes of portal %s wait: %s", portal.member_id, exc)
            return 0
    done = 0
    for event in events:
        key = f"d_{event.id}"
        if key in asks and result is not None and not result.ok(key):
            err = result.errors.get(key)
            if err is None or classify(err.code, err.description, None).retryable:
                continue
        card = cards.get(event.entity_id)
        if card is not None and card.status == "active":
            _settle(portal, card, event.entity_id, _holders(result, key, event.entity_id), now)
        done += B24Event.update(processed_at=now).where(
            (B24Event.id == event.id) & B24Event.processed_at.is_null()).execute()
    return done


def _holders(result, key: str, deleted_id: int) -> list[int]:
    if result is None or not result.ok(key):
        return []
    found = result.results.get(key)
    ids = found.get("CONTACT", []) if isinstance(found, dict) else []  # none: PHP's []
    return sorted({int(i) for i in ids if str(i).isdigit() and int(i) != deleted_id})


def _settle(portal: Portal, card: Card, deleted_id: int, holders: list[int],
            now: datetime) -> None:
    if len(holders) == 1:
        outcome = merges.follow(portal, card, holders[0], deleted_id, actor=ACTOR, now=now)
        log.info("portal %s: card %s of deleted contact %s %s", portal.member_id, card.id,
                 deleted_id, outcome)
    else:
        merges.orphan(portal, card, deleted_id, now=now)
