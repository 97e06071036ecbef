"""How background work answers a portal that refuses: pace, back off, or stop.

- QUERY_LIMIT_EXCEEDED is not an outage: the portal's bucket drains 2 requests a second.
  Our bucket is emptied to match and the row is due again within seconds, without
  spending an attempt (a cap on throttles keeps an endless refusal finite).
- 5xx, timeouts and OPERATION_TIME_LIMIT (the method is blocked until its 10-minute
  window moves on) back off for minutes, spending attempts.
- OVERLOAD_LIMIT is a manual block by Bitrix24 support: the portal's lane pauses for an
  hour with an alert on the Health page; a person resumes it when support lifts it.
- PORTAL_DELETED (HTTP 500) is permanent: the portal is marked and its work stops.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from activities.b24client import B24Error
from api.models import Portal
from background import lanes, queue as q
from background import ratelimit

THROTTLE_MIN_S = 1.0
THROTTLES_MAX = 300  # ten minutes or so of steady refusals: then they count as failures
OPERATION_LIMIT_MIN_S = 60
BLOCK_PROBE_S = 3600  # support lifts the block, not time: look once an hour at most

QUERY_LIMIT, OVERLOAD, DELETED, OPERATION_LIMIT = (
    "QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT", "PORTAL_DELETED", "OPERATION_TIME_LIMIT")


def code_of(exc: B24Error) -> str:
    return (exc.code or "").upper()


def reason_of(exc: B24Error) -> str:
    return f"{exc.code}: {exc.description}"


def settle(queue: q.Queue, row, portal: Portal, exc: B24Error, now: datetime) -> bool:
    """Reschedule or close a row that met a transient refusal.

    False: its attempts are spent and the caller gives its final answer.
    """
    code, reason = code_of(exc), reason_of(exc)
    if code == QUERY_LIMIT and row.throttles < THROTTLES_MAX:
        return _throttled(queue, row, portal, reason, now)
    if code == OVERLOAD:
        lanes.pause(portal.id, lanes.B24, now + timedelta(seconds=BLOCK_PROBE_S), code,
                    exc.description or "REST API заблокирован из-за перегрузки", now)
        q.later(queue, row, reason, now + timedelta(seconds=BLOCK_PROBE_S))
        return True
    if code == DELETED:
        lanes.mark_deleted(portal.id, exc.description or "Портал удалён", now)
        q.dead_letter(queue, row, reason, now)
        return True
    if row.attempts >= queue.attempts_max:
        return False
    wait = queue.backoff(row.attempts)
    if code == OPERATION_LIMIT:
        wait = max(wait, timedelta(seconds=OPERATION_LIMIT_MIN_S))
    queue.model.update(**{queue.error_field: reason[:q.ERROR_MAX]}, next_attempt_at=now + wait,
                       claimed_until=None).where(queue.model.id == row.id).execute()
    return True


def _throttled(queue: q.Queue, row, portal: Portal, reason: str, now: datetime) -> bool:
    limiter = ratelimit.shared()
    limiter.refused(portal.member_id)
    wait_s = max(THROTTLE_MIN_S, limiter.wait_s(portal.member_id))
    q.later(queue, row, reason, now + timedelta(seconds=wait_s))
    return True


def permanent(exc: B24Error) -> bool:
    """PORTAL_DELETED comes as HTTP 500, which would otherwise look transient."""
    return code_of(exc) == DELETED
