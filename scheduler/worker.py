"""The scheduler: singleton jobs behind a per-database lock, and the lane workers.

- Workers (background.workers): the Bitrix24 lane (activity runs, the outbox), `workers`
  threads of it, and one UniSender lane thread. On PostgreSQL every process that runs the
  scheduler works the lanes (claims skip each other's rows, a portal's lane is held by one
  worker at a time); on SQLite only the lock holder does, with one Bitrix24 thread.
- Singletons, only in the process holding the lock: every 3 s the contact events; every
  minute the daily jobs due in some portal's time zone; nightly the full contact sync.
kick() wakes the workers at once after a handler records a call (LISTEN/NOTIFY on
PostgreSQL reaches every process), so a workflow gets its answer in about a second.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from datetime import datetime, time

from activities.portals import B24Settings
from api.db import connection, is_postgres
from api.webhooks import sender as webhook_sender
from background import leases, wakeup, workers
from background.dispatch import deliver_due
from background.runner import run_due
from notifications import delivery
from scheduler import daily, heartbeat, offline, reconcile, sync
from scheduler.lock import SchedulerLease

log = logging.getLogger(__name__)
TICK_S = 3
DAILY_CHECK_S = 60
STOP_WAIT_S = 30  # a clean stop lets a worker finish the row in hand


def clock_time(value: str, default: str) -> time:
    hours, minutes = (value or default).split(":")
    return time(int(hours), int(minutes))


class Worker:
    def __init__(self, app):
        self.app = app
        self.scheduler = None
        self.lease = SchedulerLease(app.config["DATABASE_URL"])
        self._lease_guard = threading.Lock()  # jobs and lane threads share the lease
        self.workers = 1
        self.threads: list[workers.LaneThread] = []
        self.listener = None

    @property
    def holder(self) -> str:
        return leases.process()  # after a fork, the child's own pid

    @property
    def settings(self) -> B24Settings:
        return B24Settings.from_config(self.app.config)

    def tick(self, now: datetime | None = None, session=None,
             portal=None) -> tuple[int, int, int, int, int]:
        """One pass of everything, in order (tests, `run-once outbox`): due runs first
        (they enqueue writes), then what waits to be sent. Returns the runs, outbox rows,
        messages, webhook deliveries and contact events worked. `portal`: only its rows
        (webhooks are then left for the scheduler)."""
        pid = None if portal is None else portal.id
        with connection(), leases.kept():
            runs = run_due(self.settings, now=now, session=session, portal_id=pid)
            sent = deliver_due(self.settings, now=now, session=session, portal_id=pid)
            messages = delivery.deliver_due(self.app.config, now=now, session=session,
                                            portal=portal)
            hooks = 0
            if pid is None:  # not split by portal: with --portal the scheduler does these
                hooks = webhook_sender.deliver_due(self.app.config, now=now)
                offline.tick(self.settings, now=now, session=session)  # lost events, merges
            events = sync.process_contact_events(self.settings, now=now, session=session,
                                                 portal=portal)
        return runs, sent, messages, hooks, events

    def b24_pass(self, stopping=None, now: datetime | None = None, session=None) -> int:
        # A holder per thread (host:pid/thread): under the process's one name, two lane
        # threads both "held" a flooded portal's lane and slept on its bucket while a
        # quiet portal waited.
        return workers.b24_pass(self.settings, leases.me(), now=now, session=session,
                                stopping=stopping)

    def unisender_pass(self, stopping=None, now: datetime | None = None, session=None) -> int:
        return workers.unisender_pass(self.settings, self.app.config, now=now, session=session)

    def webhook_pass(self, stopping=None, now: datetime | None = None) -> int:
        return webhook_sender.deliver_due(self.app.config, now=now)

    def contact_events(self) -> None:
        with connection():
            offline.tick(self.settings)  # events kept while we were down, merges, deletes
            sync.process_contact_events(self.settings)

    def daily(self, now: datetime | None = None) -> list[str]:
        with connection():
            return daily.run_due(clock_time(self.app.config.get("DAILY_AT"), "09:00"), now=now)

    def fold_rollups(self) -> int:
        """Fold committed movements into the numbers' rollups (api.ledger.rollups), so the
        backlog a reader would fold stays a minute long, not a month of operations."""
        from api.ledger import rollups
        from api.models import Portal

        with connection():
            return sum(rollups.catch_up(portal) for portal in Portal.select())

    def nightly_sync(self) -> None:
        with connection():
            sync.sync_all(self.settings, progress=log.info)
            reconcile.reconcile_all(self.settings)  # then our fields on every contact

    def holds_lock(self) -> bool:
        with self._lease_guard, connection():
            return self.lease.acquire()

    def may_work(self) -> bool:
        """Any number of workers on PostgreSQL; on SQLite only the lock holder's."""
        return is_postgres() or self.holds_lock()

    def _guarded(self, job):
        def run():
            try:
                if self.holds_lock():
                    heartbeat.run(job, self.holder)
            except Exception:  # the next run retries; one failure must not stop the schedule
                log.exception("scheduled job %s failed", job.__name__)
        run.__name__ = job.__name__
        return run

    def start(self, blocking: bool = False, lanes: bool = True) -> None:
        """The singleton jobs, and the lane workers unless `lanes` is False (a scheduler
        process beside worker processes: `scheduler run --processes`)."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler

        if lanes:
            self.start_lanes()
        zone = self.app.config.get("TIMEZONE") or "Europe/Moscow"
        self.scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=zone)
        sync_at = clock_time(self.app.config.get("SYNC_AT"), "02:30")
        from api.client_login import purge_throttles  # the login counters' ended windows
        for job, trigger, args in ((self.contact_events, "interval", {"seconds": TICK_S, "id": "events"}),
                                   (self.daily, "interval", {"seconds": DAILY_CHECK_S, "id": "daily"}),
                                   (self.fold_rollups, "interval", {"seconds": DAILY_CHECK_S,
                                                                    "id": "rollups"}),
                                   (purge_throttles, "interval", {"seconds": 3600, "id": "throttles"}),
                                   (self.nightly_sync, "cron", {"hour": sync_at.hour,
                                                                "minute": sync_at.minute,
                                                                "id": "sync"})):
            self.scheduler.add_job(self._guarded(job), trigger, max_instances=1, coalesce=True,
                                   **args)
        if blocking and threading.current_thread() is threading.main_thread():
            # SIGTERM (systemd, docker stop) ends like Ctrl-C: the caller's stop() lets go.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.scheduler.start()

    def start_lanes(self) -> None:
        with connection():
            count = self.workers if is_postgres() else 1
            if is_postgres():
                self.listener = wakeup.Listener(self.app.config["DATABASE_URL"], self.wake)
        b24 = [workers.LaneThread(f"b24-{n}", self.b24_pass, self.may_work, TICK_S)
               for n in range(count)]
        # A UniSender run queues its bizproc.event.send: the Bitrix24 lane sends it now.
        mail = workers.LaneThread("unisender", self.unisender_pass, self.may_work, TICK_S,
                                  after=self.wake)
        # Subscribers' servers are slow or down at times: they get a lane of their own.
        hooks = workers.LaneThread("webhooks", self.webhook_pass, self.may_work, TICK_S)
        self.threads = [*b24, mail, hooks]
        leases.start_keeper()
        for thread in self.threads + ([self.listener] if self.listener else []):
            thread.start()
        log.info("workers started: %s Bitrix24 lane thread(s), 1 UniSender and 1 webhook lane thread", count)

    def wake(self) -> None:
        for thread in self.threads:
            thread.wake.set()

    def kick(self) -> None:
        """A handler recorded work: wake this process's workers, and every other's."""
        self.wake()
        try:
            wakeup.notify()
        except Exception:  # the workers still find it at their next tick
            log.warning("could not notify the workers", exc_info=True)

    def stop(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for thread in self.threads:
            thread.stop()
        if self.listener is not None:
            self.listener.stop()
        for thread in self.threads:
            thread.join(STOP_WAIT_S)
        if self.threads and not any(thread.is_alive() for thread in self.threads):
            with connection():  # nothing is mid-send: another worker may take it all now
                leases.release()
        leases.stop_keeper()
        self.threads = []
        with self._lease_guard, connection():
            self.lease.release()


def init_app(app) -> None:
    app.extensions["worker"] = Worker(app)
    from scheduler.cli import scheduler_cli

    app.cli.add_command(scheduler_cli)
