"""The offline queue: contact events Bitrix24 kept for us while we could not hear them.

Online events are never re-sent, so the install also binds ONCRMCONTACTUPDATE and
ONCRMCONTACTDELETE with `event_type=offline` (activities.registration), and every tick
drains that queue the lossless way the docs describe (api-reference/events/offline-events.md):

1. reserve: `event.offline.get` with `clear=0` marks up to 50 records with a process_id
   and hides them from other readers; the process_id is stored before anything else;
2. process: each record becomes a B24Event row, the same row an online event makes,
   unless one for that event and contact is still waiting: seen both ways, it is handled
   once (and handling it twice would only read the contact again);
3. confirm: `event.offline.clear` with the process_id and the record ids.

A crash between 1 and 3 leaves the records reserved; the next tick asks with the stored
process_id and gets them back (records already turned into rows are not added twice).

Online events bring changes within seconds, so the queue is a safety net: a portal is
asked at most every POLL_EVERY_S (its last ask is OfflineQueue.updated_at, kept across
restarts, so the first tick after a restart asks at once), which spends a thirtieth of
a request per second of the portal's 2 req/s budget instead of a third. A portal seen
for the first time is asked one interval later: its queue only starts at install.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from activities.b24client import B24Client, B24Error
from activities.portals import B24Settings, client_for
from activities.registration import OFFLINE_EVENTS
from api.clock import utcnow
from api.db import db
from api.models import B24Event, OfflineQueue, Portal
from background import lanes, pacing

log = logging.getLogger(__name__)
BATCH_MAX = 50  # event.offline.get's default and what one reply is built for
ROUNDS_MAX = 10  # per portal and tick: 500 records, then the outbox gets its turn
POLL_EVERY_S = 30


def drain(settings: B24Settings, *, now: datetime | None = None, session=None) -> int:
    """Drain every installed portal's queue; returns how many records became events."""
    now = now or utcnow()
    total = 0
    portals = Portal.select().where((Portal.status == "active") & Portal.access_token.is_null(False)
                                    & (Portal.access_token != "")
                                    & ~Portal.id.in_(lanes.paused_ids(lanes.B24, now))  # blocked
                                    ).order_by(Portal.id)
    for portal in portals:
        if not _due(portal, now):
            continue
        try:
            total += drain_portal(portal, client_for(portal, settings, session), now)
        except B24Error as exc:  # rate limit, outage, no offline events on this plan: later
            log.warning("offline events of portal %s wait: %s", portal.member_id, exc)
            _stop_if_blocked(portal, exc, now)
    return total


def _stop_if_blocked(portal: Portal, exc: B24Error, now: datetime) -> None:
    """A portal blocked by support, or deleted, stops all our Bitrix24 work (as the
    outbox does: background.pacing), not only this queue's."""
    code = pacing.code_of(exc)
    if code == pacing.OVERLOAD:
        lanes.pause(portal.id, lanes.B24, now + timedelta(seconds=pacing.BLOCK_PROBE_S), code,
                    exc.description or "REST API заблокирован из-за перегрузки", now)
    elif code == pacing.DELETED:
        lanes.mark_deleted(portal.id, exc.description or "Портал удалён", now)


def _due(portal: Portal, now: datetime) -> bool:
    row = OfflineQueue.get_or_none(OfflineQueue.portal == portal)
    if row is None:
        OfflineQueue.create(portal=portal, updated_at=now)  # first sight: ask one interval on
        return False
    return row.process_id is not None or row.updated_at <= now - timedelta(seconds=POLL_EVERY_S)


def drain_portal(portal: Portal, client: B24Client, now: datetime) -> int:
    total = 0
    _remember(portal, _reserved(portal), now)  # asked now, whatever the answer
    for _ in range(ROUNDS_MAX):
        reserved = _reserved(portal)
        params = {"clear": 0, "limit": BATCH_MAX}
        if reserved:
            params["process_id"] = reserved
        result = client.call("event.offline.get", params).get("result") or {}
        records = [r for r in result.get("events") or [] if isinstance(r, dict)]
        process_id = result.get("process_id") or reserved
        if not records:
            return total
        _remember(portal, process_id, now)
        with db.atomic():
            total += sum(_record(portal, r, now) for r in records)
        client.call("event.offline.clear", {"process_id": process_id,
                                            "id": [r["ID"] for r in records if r.get("ID")]})
        _remember(portal, None, now)
        if len(records) < BATCH_MAX:
            return total
    return total


def _reserved(portal: Portal) -> str | None:
    row = OfflineQueue.get_or_none(OfflineQueue.portal == portal)
    return row.process_id if row else None


def _remember(portal: Portal, process_id: str | None, now: datetime) -> None:
    (OfflineQueue.insert(portal=portal, process_id=process_id, updated_at=now)
     .on_conflict(conflict_target=[OfflineQueue.portal],
                  update={OfflineQueue.process_id: process_id, OfflineQueue.updated_at: now})
     .execute())


def entity_id(record: dict) -> int | None:
    """The contact id of a record. EVENT_DATA is the online event's `data` ({"FIELDS":
    {"ID": …}}); a bare {"ID": …} is taken too (UNCONFIRMED which one every portal sends)."""
    data = record.get("EVENT_DATA")
    if not isinstance(data, dict):
        return None
    fields = data.get("FIELDS") if isinstance(data.get("FIELDS"), dict) else data
    value = str(fields.get("ID") or "")
    return int(value) if value.isdigit() else None


def _record(portal: Portal, record: dict, now: datetime) -> int:
    name = str(record.get("EVENT_NAME") or "").upper()
    contact_id = entity_id(record)
    if name not in OFFLINE_EVENTS or contact_id is None:
        return 0
    waiting = B24Event.select().where(
        (B24Event.portal == portal) & (B24Event.event == name)
        & (B24Event.entity_id == contact_id) & B24Event.processed_at.is_null()).exists()
    if waiting:
        return 0
    B24Event.create(portal=portal, event=name, entity_id=contact_id, received_at=now)
    return 1


def tick(settings: B24Settings, *, now: datetime | None = None, session=None) -> int:
    """Every tick (scheduler.worker): drain the queues, then settle deleted contacts
    (merges included). Updates are applied by scheduler.sync right after."""
    from scheduler.contact_deletes import process_deletes

    drained = drain(settings, now=now, session=session)
    process_deletes(settings, now=now, session=session)
    return drained
