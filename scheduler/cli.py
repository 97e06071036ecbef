"""`flask --app api scheduler ...`: run it as its own process, or one job now.

`run-once` tells the truth: with --dry-run nothing is written or sent (sync only reads
from Bitrix24), --portal limits every job to that portal, and the counts printed are
what was done, not what was planned.
"""
from __future__ import annotations

from datetime import date, datetime

import click
from flask import current_app
from flask.cli import AppGroup

from api import logs
from api.clock import utcnow
from api.db import connection, is_postgres
from api.models import Entry, Notification, Outbox, Portal
from scheduler import daily, preview, sync

JOB_NAMES = ("birthdays", "expiry", "sync", "outbox")


@click.group("scheduler", cls=AppGroup, help="The scheduler: daily jobs, outbox, contact sync.")
def scheduler_cli():
    pass


@scheduler_cli.command("run", help="Run the scheduler in this process (production: its own "
                                   "process beside gunicorn; only one acts per database).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Bitrix24 lane workers (PostgreSQL; SQLite keeps one): threads of this "
                   "process, or processes with --processes.")
@click.option("--processes", is_flag=True,
              help="PostgreSQL: run the workers as processes, one Bitrix24 lane thread each, "
                   "beside one scheduler process, all under this one; SIGTERM stops them all.")
def run_command(workers: int, processes: bool):
    click.echo("Scheduler starting: outbox every 3 s, daily jobs at "
               f"{current_app.config.get('DAILY_AT') or '09:00'} portal time, "
               f"contact sync at {current_app.config.get('SYNC_AT') or '02:30'}.")
    if processes:
        _needs_postgres("--processes")
        from scheduler import processes as supervisor
        from scheduler.worker import Worker

        app = current_app._get_current_object()
        click.echo(f"{workers} worker process(es) and one scheduler process.")
        return supervisor.run(lambda: Worker(app), workers)
    worker = current_app.extensions["worker"]
    worker.workers = workers
    try:
        worker.start(blocking=True)
    except (KeyboardInterrupt, SystemExit):
        worker.stop()


@scheduler_cli.command("work", help="Work the lanes only, no singleton jobs (PostgreSQL): "
                                    "activity runs, the outbox, messages, webhooks. Start as "
                                    "many as you like, on any machine, beside one "
                                    "`scheduler run`.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Bitrix24 lane threads in this process.")
def work_command(workers: int):
    _needs_postgres("scheduler work")
    from scheduler.processes import serve_lanes

    worker = current_app.extensions["worker"]
    worker.workers = workers
    click.echo(f"Worker starting: {workers} Bitrix24 lane thread(s).")
    serve_lanes(worker)


def _needs_postgres(what: str) -> None:
    if not is_postgres():
        raise click.UsageError(f"{what} needs PostgreSQL: on SQLite one embedded worker does "
                               "everything (`scheduler run`).")


@scheduler_cli.command("run-once", help="Run one job now, for every portal or one: birthdays, "
                                        "expiry, sync (contacts from Bitrix24) or outbox "
                                        "(activity runs, Bitrix24 writes, messages, events).")
@click.argument("job", type=click.Choice(JOB_NAMES))
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="birthdays only: the portal-local date to run for (default: today there). "
                   "A future date needs --dry-run.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; write and send nothing.")
@click.option("--portal", "member_id", default=None, help="Only this portal (its member_id).")
def run_once_command(job: str, day: datetime | None, dry_run: bool, member_id: str | None):
    if day is not None and job != "birthdays":
        raise click.UsageError("--date applies to birthdays only.")
    with connection():
        only = _portal(member_id)
        if job == "outbox":
            return _outbox_once(only, dry_run)
        if job == "sync":
            return _sync_once(only, dry_run)
        portals = [only] if only else list(daily.portals())
        if not portals:
            raise click.ClickException("No active portal to run for.")
        now = utcnow()
        if job == "birthdays" and not dry_run:
            _refuse_future(portals, day.date() if day else None, now)
        for portal in portals:
            _daily_once(portal, job, day.date() if day else None, dry_run, now)


def _portal(member_id: str | None) -> Portal | None:
    if member_id is None:
        return None
    portal = Portal.get_or_none(Portal.member_id == member_id)
    if portal is None:
        raise click.ClickException(f"No portal {member_id!r}: `flask --app api b24 portals` "
                                   "lists them.")
    return portal


def _name(portal: Portal) -> str:
    return portal.domain or portal.member_id


def _refuse_future(portals: list[Portal], day: date | None, now: datetime) -> None:
    """A real run for a future day would grant that day's bonus now and use up the
    year's key, so the real day would find it done: only a preview may look ahead."""
    for portal in portals:
        today = daily.local_now(portal, now).date()
        if day is not None and day > today:
            raise click.ClickException(
                f"{day} is in the future for {_name(portal)} (today there is {today}): a real "
                "run would grant that day's bonuses now. Preview it with --dry-run.")


def _daily_once(portal: Portal, job: str, day: date | None, dry_run: bool, now: datetime) -> None:
    day = day or daily.local_now(portal, now).date()
    # A manual run writes no DailyRun: the automatic one still runs and, by the job's
    # keys, finds the work done.
    before = None if dry_run else _written(portal)
    plan = daily.JOBS[job](portal, day, now, dry_run)
    head = f"{job} {day} for {_name(portal)}"
    if dry_run:
        click.echo(f"{head}: would do {len(plan.lines)} action(s).")
    else:
        click.echo(f"{head}: {len(plan.lines)} action(s) due; {_done(before, _written(portal))}.")
    for line in plan.lines:
        click.echo(f"  {line}")


def _written(portal: Portal) -> dict[str, int]:
    """What a job's work leaves behind: counted before and after, the difference is
    what this run did (a rerun finds every key taken and writes nothing)."""
    return {"ledger entry(ies)": Entry.select().where(Entry.portal == portal).count(),
            "message(s) recorded": Notification.select().where(
                Notification.portal == portal).count(),
            "Bitrix24 write(s) queued": Outbox.select().where(Outbox.portal == portal).count()}


def _done(before: dict[str, int], after: dict[str, int]) -> str:
    did = [f"{after[k] - before[k]} {k}" for k in after if after[k] != before[k]]
    return "did " + ", ".join(did) if did else "nothing new to do (already done)"


def _outbox_once(portal: Portal | None, dry_run: bool) -> None:
    scope = f" for {_name(portal)}" if portal else ""
    if dry_run:
        due = preview.outbox_due(utcnow(), portal)
        click.echo(f"Outbox{scope}, dry run: would work " + _counts(due) + ".")
        for line in preview.outbox_lines(utcnow(), portal):
            click.echo(f"  {line}")
        return
    runs, sent, messages, hooks, events = current_app.extensions["worker"].tick(portal=portal)
    counts = {"activity run(s)": runs, "Bitrix24 batch(es)": sent, "message(s)": messages,
              "webhook delivery(ies)": hooks, "contact event(s)": events}
    if portal is not None:
        del counts["webhook delivery(ies)"]  # not split by portal: the scheduler sends them
    click.echo(f"Outbox{scope}: worked " + _counts(counts) + ".")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items())


def _sync_once(portal: Portal | None, dry_run: bool) -> None:
    settings = current_app.extensions["worker"].settings
    outcome = sync.sync_all(settings, progress=click.echo, dry_run=dry_run, only=portal)
    if not outcome:
        raise click.ClickException("No installed portal with tokens to sync"
                                   + (f": {portal.member_id} has none." if portal else "."))
    failed = 0
    for member, report in outcome.items():
        if isinstance(report, sync.SyncReport):
            verb = "would change" if dry_run else "updated"
            click.echo(f"{member}: {report.contacts_seen:,} contacts read, "
                       f"{report.cards_updated:,} card(s) {verb}, {report.requests} request(s).")
        else:
            failed += 1
            click.echo(f"{member}: failed: {logs.mask(str(report))}", err=True)
    if failed:
        raise click.ClickException(f"Contact sync failed for {failed} of {len(outcome)} portal(s).")
