"""Worker processes on PostgreSQL: `scheduler run --processes` (one scheduler and N workers
under one parent) stops cleanly on SIGTERM, and a worker process killed mid-batch loses
its lane and claims within seconds to another, which finishes without a row sent twice.
The portals are a loopback server (tests/portalserver.py): the workers are other processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from portalserver import FakePortals, serve

from api.ledger import cards
from api.models import ActivityRun, Outbox, Portal, PortalLane
from background import leases
from scheduler.lock import SchedulerLease

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = 60  # a turn of 50, then one of 10


@pytest.fixture
def pg_app(app):
    if not app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("worker processes run on PostgreSQL only")
    return app


@pytest.fixture
def portals():
    fake = FakePortals(rate_per_s=50, burst=50, response_s=(0.01, 0.03))
    server = serve(fake)
    yield fake, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def started(tmp_path):
    """Start `flask --app api scheduler …` processes; whatever is left is killed after."""
    procs, logs = [], []

    def start(app, *args) -> subprocess.Popen:
        log = open(tmp_path / f"scheduler-{len(procs)}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "api", "scheduler", *args], cwd=ROOT,
            env=_env(app, tmp_path), start_new_session=True, stdout=log, stderr=log))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    for log in logs:
        log.close()


def _env(app, tmp_path) -> dict:
    return {**os.environ, "LOYALTY_DATABASE_URL": app.config["DATABASE_URL"],
           "LOYALTY_SECRET_KEY": "test-secret", "B24_CLIENT_ID": "test-client",
           "B24_CLIENT_SECRET": "test-secret", "LOYALTY_PUBLIC_URL": "https://loyalty.example.com",
           "LOYALTY_BUCKET_DIR": str(tmp_path / "buckets"), "LOYALTY_LOG_LEVEL": "WARNING"}


def accruals(port: int, tenant: str = "t1") -> Portal:
    portal = Portal.create(member_id=tenant, client_endpoint=f"http://127.0.0.1:{port}/{tenant}/rest/",
                           access_token="access-1", refresh_token="refresh-1", status="active")
    cards.create_card(portal, {"phone": "79161234567", "last_name": "Петрова",
                               "first_name": "Анна", "client_category": "Врач",
                               "contact_id": 42}, actor="t")
    ActivityRun.insert_many([{
        "portal": portal, "token_hash": f"h{n}", "event_token": f"{tenant}|{n:03d}",
        "code": "loyalty_bonus_accrue", "properties": "{}",
        "document_id": json.dumps(["crm", "CCrmDocumentDeal", f"DEAL_{n + 1}"])}
        for n in range(RUNS)]).execute()
    return portal


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def answered_once(fake: FakePortals, tenant: str = "t1") -> bool:
    return all(len(fake.answered.get(f"{tenant}|{n:03d}", [])) == 1 for n in range(RUNS))


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def test_scheduler_run_processes_works_and_stops_cleanly_on_sigterm(pg_app, portals, started):
    fake, port = portals
    accruals(port)
    parent = started(pg_app, "run", "--workers", "2", "--processes")
    assert wait_for(lambda: answered_once(fake), 60), "the worker processes did not answer"
    kids = children_of(parent.pid)
    assert len(kids) == 3  # the scheduler and two workers
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(60) == 0
    for kid in kids:
        assert not os.path.exists(f"/proc/{kid}/status") or "zombie" in open(f"/proc/{kid}/status").read()
    assert answered_once(fake)
    # A clean stop held nothing back: no lane, no claim, the scheduler lock free.
    assert PortalLane.select().where(PortalLane.holder.is_null(False)).count() == 0
    for model in (ActivityRun, Outbox):
        assert model.select().where((model.status == "pending")
                                    & model.claimed_until.is_null(False)).count() == 0
    lease = SchedulerLease(pg_app.config["DATABASE_URL"])
    assert lease.acquire()
    lease.release()


def test_a_worker_process_killed_mid_batch_is_taken_over_within_seconds(pg_app, portals, started):
    fake, port = portals
    stalled = threading.Event()
    reads = []

    def stall_the_second_read(tenant, method, cmd):
        if method == "batch" and any(c.startswith("crm.deal.get") for c in cmd.values()):
            reads.append(tenant)
            if len(reads) == 2:  # the second turn's reads: its worker is killed meanwhile
                stalled.set()
                time.sleep(5)

    fake.before = stall_the_second_read
    accruals(port)
    for _ in range(2):
        started(pg_app, "work")
    assert stalled.wait(60), "no worker reached its second turn"
    holder = PortalLane.select(PortalLane.holder).where(PortalLane.holder.is_null(False)).scalar()
    os.kill(int(holder.split("/")[0].rsplit(":", 1)[1]), signal.SIGKILL)
    killed = time.monotonic()
    assert wait_for(lambda: answered_once(fake), 40), \
        "the survivor did not finish the dead worker's runs"
    took_s = time.monotonic() - killed
    assert took_s < 30, f"took {took_s:.0f} s"  # the lease (15 s) lapsed, then one turn
    assert ActivityRun.select().where(ActivityRun.status == "done").count() == RUNS
    assert answered_once(fake)  # every run answered, none twice


def test_worker_processes_need_postgresql(app, runner):
    if app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("SQLite's refusal")
    for args in (["run", "--workers", "2", "--processes"], ["work"]):
        result = runner.invoke(args=["scheduler", *args])
        assert result.exit_code == 2 and "needs PostgreSQL" in result.output
