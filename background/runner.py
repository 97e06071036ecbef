"""Runs recorded activity calls: read from Bitrix24, write the ledger, answer the workflow.

The ledger change, the run's result and every Bitrix24 write it causes (event.send
first among them) commit in one transaction; background.dispatch delivers the writes.
Every outcome ends in a bizproc.event.send, errors included: a workflow waiting on us
must never hang.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from activities import (bonus_accrue, bonus_debit, bonus_holds, card_create, card_info,
                        notify_manager, unisender_send)
from activities.b24client import B24Error, B24TransientError
from activities.definitions import activity_for
from activities.forms import FormError
from activities.portals import B24Settings, client_for
from activities.runtime import Reply, RunContext
from api.clock import utcnow
from api.db import db
from api.ledger.errors import LedgerError
from api.models import ActivityRun
from background import lanes, leases, pacing, prefetch, queue
from background.outbox import enqueue

log = logging.getLogger(__name__)

HANDLERS = {"loyalty_card_create": card_create, "loyalty_card_info": card_info,
            "loyalty_bonus_accrue": bonus_accrue, "loyalty_bonus_debit": bonus_debit,
            "loyalty_notify_manager": notify_manager, "loyalty_unisender_send": unisender_send,
            "loyalty_bonus_hold": bonus_holds.hold, "loyalty_bonus_capture": bonus_holds.capture,
            "loyalty_bonus_release": bonus_holds.release}
ATTEMPTS_MAX = 8  # then the workflow is told Bitrix24 could not be read
CLAIM_S = leases.LEASE_S  # renewed while the worker lives (background.leases)
LOG_MESSAGE_MAX = 1000
# Runs that talk to UniSender are worked in its own lane (background.lanes.UNISENDER), so a
# slow provider never holds up the Bitrix24 lane's answers.
UNISENDER_CODES = ("loyalty_unisender_send",)


def backoff(attempts: int) -> timedelta:
    return queue.backoff(attempts, first_s=15, max_s=3600)


def _gave_up(run: ActivityRun, now: datetime) -> None:
    """A dead letter still answers its workflow, unless there is nobody left to answer."""
    if run.portal.status in ("deleted", "uninstalled"):
        return
    with db.atomic():
        enqueue(run.portal, f"run:{run.id}", {"event_send": _event_send(
            run, Reply.error("Внутренняя ошибка сервиса лояльности"))})


RUNS = queue.Queue(ActivityRun, claim_s=CLAIM_S, attempts_max=ATTEMPTS_MAX, first_s=15,
                   max_s=3600, on_dead=_gave_up)


def run_due(settings: B24Settings, *, now: datetime | None = None, limit: int = 50,
            session=None, lane: str | None = None, portal_id: int | None = None) -> int:
    """Process the runs that are due; returns how many were finished or rescheduled.

    `lane`: only the runs of that lane (None: every run, one after another);
    `portal_id`: only that portal's (a worker holding its lane).
    """
    now = now or utcnow()
    where = ~(ActivityRun.portal.in_(lanes.paused_ids(lanes.B24, now)))
    if portal_id is not None:
        where &= ActivityRun.portal == portal_id
    if lane == lanes.UNISENDER:
        where &= ActivityRun.code.in_(UNISENDER_CODES)
    elif lane == lanes.B24:
        where &= ActivityRun.code.not_in(UNISENDER_CODES)
    cache: dict = {}

    def prepare(runs: list[ActivityRun]) -> None:
        if portal_id is not None:  # a worker holding the portal's lane: its reads go together
            _prefetch(runs, settings, now, session, cache)

    return queue.work_due(RUNS, now, lambda run: process(run, settings, now=now, session=session,
                                                         cache=cache),
                          limit=limit, where=where, prepare=prepare)


def _prefetch(runs: list[ActivityRun], settings: B24Settings, now: datetime, session,
              cache: dict) -> None:
    """The reads of the runs this worker claimed, fetched together (background.prefetch).
    The claimed rows, not the first due ones: those may be another worker's."""
    live = [run for run in runs if run.attempts <= RUNS.attempts_max]
    if len(live) > 1:
        contexts = [RunContext(run.portal, run, settings, now, session) for run in live]
        prefetch.prefetch(contexts, _read_of, client_for(live[0].portal, settings, session), cache)


def _read_of(ctx: RunContext):
    activity = activity_for(ctx.run.code)
    handler = HANDLERS.get(activity.code) if activity else None
    return handler.read if handler else None


def process(run: ActivityRun, settings: B24Settings, *, now: datetime, session=None,
            cache: dict | None = None) -> None:
    ctx = RunContext(run.portal, run, settings, now, session)
    if cache:  # reads fetched with the other runs' (background.prefetch)
        ctx.__dict__["client"] = prefetch.CachedClient(client_for(run.portal, settings, session),
                                                       cache)
    activity = activity_for(run.code)
    handler = HANDLERS.get(activity.code) if activity else None
    reply, data = None, None
    try:
        if handler is None:
            reply = Reply.error(f"Действие {run.code} этим приложением не поддерживается")
        else:
            data = handler.read(ctx)
    except B24TransientError as exc:
        if pacing.settle(RUNS, run, run.portal, exc, now):
            return
        reply = Reply.error(f"Битрикс24 не ответил после {run.attempts} попыток: {exc.code}")
    except unisender_send.StillSending as exc:
        _reschedule(run, str(exc), now)  # the delivery retries bound it; the run follows them
        return
    except B24Error as exc:
        reply = Reply.error(f"Битрикс24 вернул ошибку: {exc.description or exc.code}")
    except FormError as exc:
        reply = Reply.error(form_message(exc))
    except Exception:  # a bug must still answer the workflow, not leave it hanging
        log.exception("activity %s failed while reading", run.code)
        reply = Reply.error("Внутренняя ошибка сервиса лояльности")
    _commit(ctx, handler, data, reply)


def form_message(exc: FormError) -> str:
    """Name the property the designer has to fix."""
    if exc.field and exc.field not in exc.message:
        return f"Свойство {exc.field}: {exc.message}"
    return exc.message


def _commit(ctx: RunContext, handler, data, reply: Reply | None) -> None:
    with db.atomic():
        if reply is None:
            reply = _write(ctx, handler, data)
        _finish(ctx, reply)


def _write(ctx: RunContext, handler, data) -> Reply:
    try:
        with db.atomic():  # a savepoint: a refused operation leaves nothing half-written
            return handler.write(ctx, data)
    except FormError as exc:
        return Reply.error(form_message(exc))
    except LedgerError as exc:
        return Reply.error(exc.message)
    except Exception:
        log.exception("activity %s failed while writing", ctx.run.code)
        return Reply.error("Внутренняя ошибка сервиса лояльности")


def _event_send(run: ActivityRun, reply: Reply) -> tuple[str, dict]:
    return ("bizproc.event.send", {"EVENT_TOKEN": run.event_token, "RETURN_VALUES": reply.values,
                                   "LOG_MESSAGE": reply.log[:LOG_MESSAGE_MAX]})


def _finish(ctx: RunContext, reply: Reply) -> None:
    run = ctx.run
    enqueue(ctx.portal, f"run:{run.id}", {"event_send": _event_send(run, reply), **reply.calls})
    ActivityRun.update(status="done", return_values=json.dumps(reply.values, ensure_ascii=False),
                       finished_at=ctx.now, claimed_until=None,
                       last_error=reply.values.get("Error") or None).where(
        ActivityRun.id == run.id).execute()
    log.info("activity %s run %s: %s", run.code, run.id, reply.log)


def _reschedule(run: ActivityRun, reason: str, now: datetime) -> None:
    ActivityRun.update(next_attempt_at=now + backoff(run.attempts), claimed_until=None,
                       last_error=reason[:500]).where(
        ActivityRun.id == run.id).execute()
