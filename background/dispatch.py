"""Delivers the outbox: Bitrix24 writes committed with the changes that caused them.

Each row is one batch request. A retry resends only the commands not yet delivered;
transient failures (rate limit, 5xx, timeouts, token trouble) back off, permanent ones
are recorded with the reason and not retried. A crash between the HTTP call and the
status update means one redelivery, which Bitrix24 absorbs: event.send for a closed
action is ignored, field updates write the same values, notifications carry a TAG.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from activities.b24client import BATCH_COMMANDS_MAX, B24AuthError, B24Error, BatchError, classify
from activities.portals import B24Settings, client_for
from api.clock import utcnow
from api.models import Outbox, Portal
from background import lanes, leases, pacing, queue
from notifications import notices, timeline

log = logging.getLogger(__name__)

ATTEMPTS_MAX = 15  # about a day of backoff; then it waits for a person to press retry
CLAIM_S = leases.LEASE_S  # renewed while the worker lives (background.leases)


OUTBOX = queue.Queue(Outbox, claim_s=CLAIM_S, attempts_max=ATTEMPTS_MAX, first_s=10, max_s=3600)


def backoff(attempts: int) -> timedelta:
    return OUTBOX.backoff(attempts)


def deliver_due(settings: B24Settings, *, now: datetime | None = None, limit: int = 50,
                session=None, portal_id: int | None = None) -> int:
    """Deliver what is due, the rows of one portal packed into shared batch requests."""
    now = now or utcnow()
    where = ~(Outbox.portal.in_(lanes.paused_ids(lanes.B24, now)))
    if portal_id is not None:
        where &= Outbox.portal == portal_id
    return queue.work_due_in_packs(
        OUTBOX, now, packs, lambda pack: deliver_pack(pack, settings, now=now, session=session),
        limit=limit, where=where)


def packs(rows: list[Outbox]) -> list[list[Outbox]]:
    """Consecutive rows of one portal whose pending calls fit one batch (50 commands)."""
    out: list[list[Outbox]] = []
    open_packs: dict[int, tuple[list[Outbox], int]] = {}
    for row in rows:
        size = max(1, len(_todo(json.loads(row.calls), json.loads(row.done))))
        pack, used = open_packs.get(row.portal_id, (None, 0))
        if pack is None or used + size > BATCH_COMMANDS_MAX:
            pack, used = [], 0
            out.append(pack)
        pack.append(row)
        open_packs[row.portal_id] = (pack, used + size)
    return out


def deliver(row: Outbox, settings: B24Settings, *, now: datetime, session=None) -> None:
    deliver_pack([row], settings, now=now, session=session)


def deliver_pack(rows: list[Outbox], settings: B24Settings, *, now: datetime, session=None) -> None:
    """One request for the rows of one portal. Packed with others, a row's commands go out
    under aliases (`r<row>_<n>`: keys stay unique and short) and each row learns its own
    results; alone, under their own keys."""
    mine = leases.fence(Outbox, [row.id for row in rows], now)
    rows = [row for row in rows if row.id in mine]  # the others went to another worker
    if not rows:
        return
    portal = Portal.get_by_id(rows[0].portal_id)
    if portal.status in ("uninstalled", "deleted") or not portal.access_token:
        for row in rows:
            _close(row, "failed", {}, "Приложение удалено с портала: доставка невозможна", now)
        return
    plans = [_plan(row) for row in rows]
    aliases = {(f"r{row.id}_{n}" if len(rows) > 1 else key): (row.id, key)
               for row, _, _, todo in plans for n, key in enumerate(todo)}
    todo_of = {row.id: todo for row, _, _, todo in plans}
    todo = {alias: todo_of[row_id][key] for alias, (row_id, key) in aliases.items()}
    try:
        outcome = _send(client_for(portal, settings, session), todo) if todo else {}
    except B24Error as exc:
        if notices.not_run(exc):
            notices.release_untagged([key for _, key in aliases.values()])
        for row, _, done, _ in plans:
            _after_error(row, portal, done, exc, now)
        return
    lanes.worked(portal.id, lanes.B24)
    mine: dict[int, dict] = {row.id: {} for row in rows}
    for alias, (row_id, key) in aliases.items():
        mine[row_id][key] = outcome[alias]
    for row, calls, done, _ in plans:
        _settle(row, calls, done, mine[row.id], now)


def _todo(calls: dict, done: dict) -> list[str]:
    return [key for key in calls if key not in done]


def _plan(row: Outbox) -> tuple[Outbox, dict, dict, dict]:
    """The row's calls, what is done, and what to send now. An untagged chat message whose
    earlier attempt got no answer is held back (notices.claim_untagged), never sent twice."""
    calls, done = json.loads(row.calls), json.loads(row.done)
    todo, held = notices.claim_untagged({k: tuple(calls[k]) for k in _todo(calls, done)})
    done.update({key: {"error": notices.UNKNOWN_CHAT} for key in held})
    return row, calls, done, todo


def _settle(row: Outbox, calls: dict, done: dict, outcome: dict, now: datetime) -> None:
    retry = {}
    for key, result in outcome.items():
        if isinstance(result, BatchError) and classify(result.code, result.description, None).retryable:
            retry[key] = f"{result.code}: {result.description}"
            notices.release_untagged([key])
        elif isinstance(result, BatchError) and _fall_back(calls, key, result):
            retry[key] = f"{result.code}: {result.description} (retrying as a timeline comment)"
        elif isinstance(result, BatchError):
            done[key] = {"error": f"{result.code}: {result.description}"}
            _notice_delivered(key, None, done[key]["error"])
        else:
            done[key] = {"ok": True}
            _notice_delivered(key, result, None)
    if retry:
        Outbox.update(calls=json.dumps(calls, ensure_ascii=False)).where(Outbox.id == row.id).execute()
        return _later(row, done, "; ".join(f"{k} {v}" for k, v in retry.items()), now,
                      at_once=all("timeline comment" in v for v in retry.values()))
    failed = {k: v["error"] for k, v in done.items() if "error" in v}
    _close(row, "failed" if failed else "sent", done,
           "; ".join(f"{k}: {v}" for k, v in failed.items()) or None, now)


def _send(client, todo: dict) -> dict:
    """One request either way: a single call, or a batch of several.
    Returns each key's result, or its BatchError."""
    if len(todo) == 1:
        key, (method, params) = next(iter(todo.items()))
        return {key: client.call(method, params).get("result")}
    result = client.batch(todo)
    return {key: result.errors[key] if key in result.errors else result.results.get(key)
            for key in todo}


def _fall_back(calls: dict, key: str, error: BatchError) -> bool:
    """A refused timeline log entry becomes a comment (rewritten in place, sent next pass)."""
    method, params = calls[key]
    if method != "crm.timeline.logmessage.add":
        return False
    if (error.code or "0").upper() not in timeline.FALLBACK_ON and "access" not in error.description.lower():
        return False
    calls[key] = list(timeline.as_comment(params))
    return True


def _notice_delivered(key: str, result, error: str | None) -> None:
    """A chat notice rode in this batch: its Notification row learns the outcome."""
    if key.startswith("notice_") and key[7:].isdigit():
        notices.mark_chat(int(key[7:]), result, error)


def _after_error(row: Outbox, portal: Portal, done: dict, exc: B24Error, now: datetime) -> None:
    reason = f"{exc.code}: {exc.description}"[:500]
    if exc.retryable:
        Outbox.update(done=json.dumps(done)).where(Outbox.id == row.id).execute()
        if not pacing.settle(OUTBOX, row, portal, exc, now):
            queue.dead_letter(OUTBOX, row, reason, now)
        return
    # Auth trouble waits too: a reinstall or a refreshed token lets it through later.
    if isinstance(exc, B24AuthError):
        return _later(row, done, reason, now)
    _close(row, "failed", done, reason, now)


def _later(row: Outbox, done: dict, reason: str, now: datetime, at_once: bool = False) -> None:
    status = "failed" if row.attempts >= ATTEMPTS_MAX else "pending"
    due = now if at_once else now + backoff(row.attempts)
    Outbox.update(status=status, done=json.dumps(done), last_error=reason[:1000],
                  next_attempt_at=due, claimed_until=None).where(
        Outbox.id == row.id).execute()
    log.warning("outbox %s: %s (attempt %s)", row.id, reason, row.attempts)


def _close(row: Outbox, status: str, done: dict, reason: str | None, now: datetime) -> None:
    Outbox.update(status=status, done=json.dumps(done), last_error=reason, claimed_until=None,
                  sent_at=now if status == "sent" else None).where(Outbox.id == row.id).execute()
    if status == "failed":
        log.warning("outbox %s failed: %s", row.id, reason)


def retry(row_id: int, now: datetime | None = None) -> bool:
    """A person pressed retry: a failed row becomes due again (its delivered parts stay done)."""
    return Outbox.update(status="pending", next_attempt_at=now or utcnow(), attempts=0,
                         claimed_until=None).where(
        (Outbox.id == row_id) & (Outbox.status == "failed")).execute() == 1
