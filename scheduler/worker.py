"""The in-process worker: runs activity calls and delivers the outbox.

A periodic job is the safety net (it finds whatever a crash left behind); kick() runs
it at once after a handler records a call, so a workflow gets its answer in about a
second rather than at the next tick.
"""
from __future__ import annotations

import logging
from datetime import datetime

from activities.portals import B24Settings
from activities.runner import run_due
from api.db import connection
from notifications import delivery
from scheduler.dispatch import deliver_due

log = logging.getLogger(__name__)
TICK_S = 3


class Worker:
    def __init__(self, app):
        self.app = app
        self.scheduler = None

    @property
    def settings(self) -> B24Settings:
        return B24Settings.from_config(self.app.config)

    def tick(self, now: datetime | None = None, session=None) -> tuple[int, int]:
        """One pass: due runs first (they enqueue writes), then the outbox."""
        with connection():
            runs = run_due(self.settings, now=now, session=session)
            sent = deliver_due(self.settings, now=now, session=session)
            delivery.deliver_due(self.app.config, now=now, session=session)
        return runs, sent

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # the next tick retries; a crash here must not stop the schedule
            log.exception("worker tick failed")

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(daemon=True)
        self.scheduler.add_job(self._safe_tick, "interval", seconds=TICK_S, id="worker",
                               max_instances=1, coalesce=True)
        self.scheduler.start()

    def kick(self) -> None:
        if self.scheduler is not None:
            self.scheduler.modify_job("worker", next_run_time=datetime.now(self.scheduler.timezone))

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)


def init_app(app) -> None:
    app.extensions["worker"] = Worker(app)
