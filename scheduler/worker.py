"""The scheduler: APScheduler jobs behind a per-database lock.

- every 3 s: activity runs, then the Bitrix24 outbox, UniSender messages, contact events;
- every minute: the daily jobs that are due in some portal's time zone (birthdays, expiry);
- nightly: the full contact sync.
kick() runs the 3-second job at once after a handler records a call, so a workflow gets
its answer in about a second. Only the process holding the lock acts.
"""
from __future__ import annotations

import logging
from datetime import datetime, time

from activities.portals import B24Settings
from activities.runner import run_due
from api.db import connection
from notifications import delivery
from scheduler import daily, heartbeat, sync
from scheduler.dispatch import deliver_due
from scheduler.lock import SchedulerLease

log = logging.getLogger(__name__)
TICK_S = 3
DAILY_CHECK_S = 60


def clock_time(value: str, default: str) -> time:
    hours, minutes = (value or default).split(":")
    return time(int(hours), int(minutes))


class Worker:
    def __init__(self, app):
        self.app = app
        self.scheduler = None
        self.lease = SchedulerLease(app.config["DATABASE_URL"])

    @property
    def settings(self) -> B24Settings:
        return B24Settings.from_config(self.app.config)

    def tick(self, now: datetime | None = None, session=None,
             portal=None) -> tuple[int, int, int, int]:
        """One pass: due runs first (they enqueue writes), then what waits to be sent.
        Returns the runs, outbox rows, messages and contact events worked."""
        with connection():
            runs = run_due(self.settings, now=now, session=session, portal=portal)
            sent = deliver_due(self.settings, now=now, session=session, portal=portal)
            messages = delivery.deliver_due(self.app.config, now=now, session=session,
                                            portal=portal)
            events = sync.process_contact_events(self.settings, now=now, session=session,
                                                 portal=portal)
        return runs, sent, messages, events

    def daily(self, now: datetime | None = None) -> list[str]:
        with connection():
            return daily.run_due(clock_time(self.app.config.get("DAILY_AT"), "09:00"), now=now)

    def nightly_sync(self) -> None:
        with connection():
            sync.sync_all(self.settings, progress=log.info)

    def _guarded(self, job):
        def run():
            try:
                with connection():
                    held = self.lease.acquire()
                if held:
                    heartbeat.run(job, self.lease.holder)
            except Exception:  # the next run retries; one failure must not stop the schedule
                log.exception("scheduled job %s failed", job.__name__)
        run.__name__ = job.__name__
        return run

    def start(self, blocking: bool = False) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler

        zone = self.app.config.get("TIMEZONE") or "Europe/Moscow"
        self.scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=zone)
        sync_at = clock_time(self.app.config.get("SYNC_AT"), "02:30")
        for job, trigger, args in ((self.tick, "interval", {"seconds": TICK_S, "id": "worker"}),
                                   (self.daily, "interval", {"seconds": DAILY_CHECK_S, "id": "daily"}),
                                   (self.nightly_sync, "cron", {"hour": sync_at.hour,
                                                                "minute": sync_at.minute,
                                                                "id": "sync"})):
            self.scheduler.add_job(self._guarded(job), trigger, max_instances=1, coalesce=True,
                                   **args)
        self.scheduler.start()

    def kick(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.modify_job("worker", next_run_time=datetime.now(self.scheduler.timezone))

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        with connection():
            self.lease.release()


def init_app(app) -> None:
    app.extensions["worker"] = Worker(app)
    from scheduler.cli import scheduler_cli

    app.cli.add_command(scheduler_cli)
