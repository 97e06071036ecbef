"""The scheduler lock stays true: a dead holder loses it at once, on both databases."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.db import db, is_postgres
from scheduler.lock import SchedulerLease

ROOT = Path(__file__).resolve().parents[1]


def test_a_terminated_postgres_session_stops_its_scheduler_at_once(app, caplog):
    if not is_postgres():
        pytest.skip("PostgreSQL advisory locks")
    url = app.config["DATABASE_URL"]
    first, second = SchedulerLease(url, "a"), SchedulerLease(url, "b")
    caplog.set_level(logging.INFO, logger="scheduler.lock")
    assert first.acquire() and not second.acquire()
    pid = first._pg.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    db.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))  # a dropped connection
    assert second.acquire()  # the server freed it with the session
    assert not first.acquire()  # and the old holder knows it at its next tick
    assert not first.acquire() and second.acquire()
    said = [r.getMessage() for r in caplog.records]
    assert "scheduler lock taken by a" in said and "scheduler lock taken by b" in said
    assert "scheduler lock lost by a: it stops acting" in said
    second.release()
    first.release()


@pytest.fixture
def scheduler_process(app):
    """`flask scheduler run` in a process of its own on the test's SQLite database, holding
    its lock; and the lease of a replacement waiting for it."""
    if is_postgres():
        pytest.skip("SQLite file lock")
    url = app.config["DATABASE_URL"]
    env = {**os.environ, "LOYALTY_DATABASE_URL": url, "LOYALTY_SECRET_KEY": "test"}
    child = subprocess.Popen([sys.executable, "-m", "flask", "--app", "api", "scheduler", "run"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    replacement = SchedulerLease(url, "replacement")
    try:
        _wait_until_held_elsewhere(replacement, child)
        yield child, replacement
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        replacement.release()


def test_a_sigkilled_scheduler_on_sqlite_is_replaced_in_seconds(app, scheduler_process):
    child, replacement = scheduler_process
    url = app.config["DATABASE_URL"]
    lock_file = Path(url[len("sqlite:///"):] + ".scheduler.lock")
    for _ in range(100):  # the holder writes its name just after taking the flock
        if lock_file.read_text().endswith(f":{child.pid}"):
            break
        time.sleep(0.05)
    assert lock_file.read_text().endswith(f":{child.pid}")  # an flock beside the database
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    killed = time.monotonic()
    while not replacement.acquire() and time.monotonic() - killed < 30:
        time.sleep(0.05)
    took_s = time.monotonic() - killed
    print(f"\nSIGKILLed scheduler on SQLite: lock taken over after {took_s:.2f} s")
    assert replacement.held and took_s < 5


def _wait_until_held_elsewhere(lease: SchedulerLease, child: subprocess.Popen) -> None:
    """Until the child's first tick holds the lock (ours would block it: let go at once)."""
    deadline = time.monotonic() + 60
    while lease.acquire():
        lease.release()
        assert child.poll() is None, "the scheduler exited"
        assert time.monotonic() < deadline, "the scheduler never took its lock"
        time.sleep(0.2)


def test_sigterm_stops_the_scheduler_cleanly_and_lets_go_of_its_lock(scheduler_process):
    child, replacement = scheduler_process
    child.send_signal(signal.SIGTERM)
    assert child.wait(40) == 0  # stopped, not killed
    assert replacement.acquire()
