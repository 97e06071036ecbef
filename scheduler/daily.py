"""Daily jobs, each run once per portal per local day, at a local time (default 09:00).

Checked every minute: a portal whose local clock has passed the run time and whose job
has no DailyRun for its local date gets it now. So a run missed during downtime happens
at start the same day, and days that passed are not replayed. The job's own keys make
a rerun after a crash mid-run write nothing twice; the DailyRun row is written last.
"""
from __future__ import annotations

import json
import logging
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from api.clock import utcnow
from api.models import DailyRun, Portal
from scheduler import birthdays, expiry

log = logging.getLogger(__name__)
JOBS = {"birthdays": lambda portal, today, now, dry: birthdays.run(portal, today, dry_run=dry, now=now),
        "expiry": lambda portal, today, now, dry: expiry.run(portal, dry_run=dry, now=now)}


def local_now(portal: Portal, now_utc: datetime) -> datetime:
    try:
        zone = ZoneInfo(portal.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("Europe/Moscow")
    return now_utc.replace(tzinfo=timezone.utc).astimezone(zone)


def portals():
    return Portal.select().where(Portal.status.in_(["active", "api"])).order_by(Portal.id)


def run_due(run_at: time, *, now: datetime | None = None) -> list[str]:
    """Run every job that is due; returns what ran, one line each."""
    now, ran = now or utcnow(), []
    for portal in portals():
        local = local_now(portal, now)
        if local.time() < run_at:
            continue
        for job in JOBS:
            if not DailyRun.select().where((DailyRun.portal == portal) & (DailyRun.job == job)
                                           & (DailyRun.day == local.date())).exists():
                ran.append(run_job(portal, job, local.date(), now=now))
    return ran


def run_job(portal: Portal, job: str, day: date, *, now: datetime, dry_run: bool = False) -> str:
    plan = JOBS[job](portal, day, now, dry_run)
    if not dry_run:
        DailyRun.insert(portal=portal, job=job, day=day, finished_at=utcnow(),
                        summary=json.dumps(plan.lines[:200], ensure_ascii=False)
                        ).on_conflict_ignore().execute()
    line = f"{job} {day} for {portal.domain or portal.member_id}: {len(plan.lines)} action(s)"
    log.info(line)
    return line
