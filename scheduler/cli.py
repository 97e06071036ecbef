"""`flask --app api scheduler ...`: run it as its own process, or one job now."""
from __future__ import annotations

from datetime import date

import click
from flask import current_app
from flask.cli import AppGroup

from api.clock import utcnow
from api.db import connection
from api.models import Portal
from scheduler import daily, sync

JOB_NAMES = ("birthdays", "expiry", "sync", "outbox")


@click.group("scheduler", cls=AppGroup, help="The scheduler: daily jobs, outbox, contact sync.")
def scheduler_cli():
    pass


@scheduler_cli.command("run", help="Run the scheduler in this process (production).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Bitrix24 lane worker threads (PostgreSQL; SQLite keeps one).")
def run_command(workers: int):
    worker = current_app.extensions["worker"]
    worker.workers = workers
    click.echo("Scheduler starting: outbox every 3 s, daily jobs at "
               f"{current_app.config.get('DAILY_AT') or '09:00'} portal time, "
               f"contact sync at {current_app.config.get('SYNC_AT') or '02:30'}.")
    try:
        worker.start(blocking=True)
    except (KeyboardInterrupt, SystemExit):
        worker.stop()


@scheduler_cli.command("run-once", help="Run one job now, for every portal or one.")
@click.argument("job", type=click.Choice(JOB_NAMES))
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="The portal-local date to run for (birthdays); default: today.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option("--portal", "member_id", default=None, help="Only this portal (member_id).")
def run_once_command(job: str, day, dry_run: bool, member_id: str | None):
    worker = current_app.extensions["worker"]
    with connection():
        if job == "outbox":
            runs, sent = worker.tick()
            click.echo(f"Outbox: {runs} activity run(s) finished, {sent} delivery(ies) attempted.")
            return
        if job == "sync":
            for member, report in sync.sync_all(worker.settings, progress=click.echo).items():
                click.echo(f"{member}: {report}")
            return
        for portal in _portals(member_id):
            _daily_once(portal, job, day.date() if day else None, dry_run)


def _portals(member_id: str | None):
    query = daily.portals()
    if member_id:
        query = Portal.select().where(Portal.member_id == member_id)
    rows = list(query)
    if not rows:
        raise click.ClickException("No portal to run for.")
    return rows


def _daily_once(portal: Portal, job: str, day: date | None, dry_run: bool) -> None:
    now = utcnow()
    day = day or daily.local_now(portal, now).date()
    # A manual run writes no DailyRun: the automatic one still runs and, by the job's
    # keys, finds the work done.
    plan = daily.JOBS[job](portal, day, now, dry_run)
    label = "would do" if dry_run else "did"
    click.echo(f"{job} {day} for {portal.domain or portal.member_id}: {label} "
               f"{len(plan.lines)} action(s).")
    for line in plan.lines:
        click.echo(f"  {line}")
