"""Per-portal lanes of background work: why a portal's work waits or stopped.

A lane is (portal, b24 | unisender). Its row says until when the lane is paused and why:
a portal that answered OVERLOAD_LIMIT (a manual block by Bitrix24 support) or
PORTAL_DELETED carries an alert shown on the Health page; its rows are not claimed
while the pause lasts, so nobody knocks on a closed door every few seconds.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from api.clock import utcnow
from api.models import Portal, PortalLane

log = logging.getLogger(__name__)

B24, UNISENDER = "b24", "unisender"
FOREVER = datetime(9999, 1, 1)
ALERT_MAX = 1000


def lane(portal_id: int, name: str) -> PortalLane:
    PortalLane.insert(portal=portal_id, lane=name).on_conflict_ignore().execute()
    return PortalLane.get((PortalLane.portal == portal_id) & (PortalLane.lane == name))


def pause(portal_id: int, name: str, until: datetime, code: str, text: str, now: datetime) -> None:
    lane(portal_id, name)
    PortalLane.update(paused_until=until, alert_code=code, alert=text[:ALERT_MAX],
                      alert_at=now).where((PortalLane.portal == portal_id)
                                          & (PortalLane.lane == name)).execute()
    log.warning("portal %s: %s lane paused until %s: %s %s", portal_id, name, until, code, text)


def mark_deleted(portal_id: int, text: str, now: datetime) -> None:
    """PORTAL_DELETED is permanent: the portal is marked and its Bitrix24 work stops."""
    Portal.update(status="deleted", updated_at=now).where(Portal.id == portal_id).execute()
    pause(portal_id, B24, FOREVER, "PORTAL_DELETED", text, now)


def paused_ids(name: str, now: datetime):
    """A subquery of the portals whose lane `name` waits now (for the claims' WHERE)."""
    return PortalLane.select(PortalLane.portal).where(
        (PortalLane.lane == name) & (PortalLane.paused_until > now))


def alerts(portal_id: int) -> list[PortalLane]:
    return list(PortalLane.select().where((PortalLane.portal == portal_id)
                                          & PortalLane.alert_code.is_null(False)))


def resume(portal_id: int, name: str, now: datetime | None = None) -> bool:
    """A person says the block is lifted: work resumes at once. A deleted portal stays."""
    return PortalLane.update(paused_until=None, alert_code=None, alert=None, alert_at=None).where(
        (PortalLane.portal == portal_id) & (PortalLane.lane == name)
        & (PortalLane.alert_code != "PORTAL_DELETED")).execute() == 1


def worked(portal_id: int, name: str) -> None:
    """A call went through: an alert from an earlier block no longer holds."""
    PortalLane.update(alert_code=None, alert=None, alert_at=None, paused_until=None).where(
        (PortalLane.portal == portal_id) & (PortalLane.lane == name)
        & (PortalLane.alert_code == "OVERLOAD_LIMIT")).execute()


def hold(portal_id: int, name: str, holder: str, lease_s: float, now: datetime | None = None) -> bool:
    """Take (or keep) the lane for `lease_s`: one worker at a time works a portal's lane."""
    now = now or utcnow()
    lane(portal_id, name)
    mine_or_free = (PortalLane.holder.is_null() | (PortalLane.holder == holder)
                    | (PortalLane.lease_until < now))
    return PortalLane.update(holder=holder, lease_until=now + timedelta(seconds=lease_s)).where(
        (PortalLane.portal == portal_id) & (PortalLane.lane == name) & mine_or_free).execute() == 1


def let_go(portal_id: int, name: str, holder: str) -> None:
    PortalLane.update(holder=None, lease_until=None).where(
        (PortalLane.portal == portal_id) & (PortalLane.lane == name)
        & (PortalLane.holder == holder)).execute()
