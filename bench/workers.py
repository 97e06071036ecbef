"""Worker benchmark: activity runs from the handler's POST to bizproc.event.send.

Fake portals on a loopback server (tests/portalserver.py: one tenant per path, 50–150 ms per
response, the real rate limit per portal: 2 requests a second, burst 50, 503
QUERY_LIMIT_EXCEEDED above it) and the app's own workers, 1, 2 and 4 of them: lane threads
of this process (`scheduler run --workers N`) and, on PostgreSQL, worker processes
(`scheduler work`, N of them). Prints for each: one portal answering 100 accruals started
at once (runs/s, p50/p99), 100 portals with 20 runs each (runs/s, p50/p99), and a quiet
portal's answer time while another portal is flooded with 500 runs (p50/p99 of 20 probes).
Progress goes to stderr. Not a test: `python bench/workers.py [--portals 100] [--mode both]`.
PostgreSQL at LOYALTY_TEST_POSTGRES_URL when it answers (a schema of its own), else SQLite
(one worker thread: more are not used there).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time

# The project's root, not bench/, first on sys.path: bench/http.py would hide the stdlib's http.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import signal  # noqa: E402
import subprocess  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from api import create_app  # noqa: E402
from api.db import connect, db  # noqa: E402
from api.ledger import cards  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Portal  # noqa: E402
from background import ratelimit  # noqa: E402
from tests.portalserver import FakePortals, serve  # noqa: E402

PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = f"bench_workers_{os.getpid()}"
APP_TOKEN = "bench-app-token"
RATE_PER_S, BURST = 2.0, 50
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBES = 20


def database_url(tmp: str) -> str:
    try:
        admin = connect(PG_URL)
        admin.connect()
    except Exception:  # noqa: BLE001 (no PostgreSQL: SQLite)
        return f"sqlite:///{tmp}/bench.sqlite3"
    admin.execute_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    admin.execute_sql(f"CREATE SCHEMA {SCHEMA}")
    admin.close()
    joiner = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{joiner}options=-c%20search_path%3D{SCHEMA}"


def drop_schema(url: str) -> None:
    if url.startswith("postgresql"):
        admin = connect(PG_URL)
        with admin.connection_context():
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def make_portals(prefix: str, count: int, port: int) -> list[Portal]:
    found = []
    for n in range(count):
        tenant = f"{prefix}{n}"
        portal = Portal.create(member_id=tenant, client_endpoint=f"http://127.0.0.1:{port}/{tenant}/rest/",
                               access_token="bench", refresh_token="bench",
                               application_token=APP_TOKEN, status="active")
        cards.create_card(portal, {"phone": f"7916{n:07d}", "last_name": "Петрова",
                                   "first_name": "Анна", "client_category": "Врач",
                                   "contact_id": 42}, actor="bench")
        found.append(portal)
    return found


def form(portal: Portal, token: str, deal: int) -> str:
    pairs = [("workflow_id", "wf"), ("code", "loyalty_bonus_accrue"), ("document_id[0]", "crm"),
             ("document_id[1]", "CCrmDocumentDeal"), ("document_id[2]", f"DEAL_{deal}"),
             ("document_type[0]", "crm"), ("document_type[1]", "CCrmDocumentDeal"),
             ("document_type[2]", "DEAL"), ("event_token", token),
             ("auth[member_id]", portal.member_id), ("auth[application_token]", APP_TOKEN),
             ("auth[user_id]", "1"), ("auth[domain]", "bench.bitrix24.com")]
    return urlencode(pairs)


class Bench:
    def __init__(self, app, portals: FakePortals):
        self.app, self.portals = app, portals
        self.client = app.test_client()
        self.posted: dict[str, float] = {}
        self.serial = 0

    def post(self, portal: Portal) -> str:
        self.serial += 1
        token = f"{portal.member_id}|{self.serial}"
        self.posted[token] = time.monotonic()
        response = self.client.post("/b24/activities/loyalty_bonus_accrue",
                                    data=form(portal, token, self.serial),
                                    content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200, response.get_data(as_text=True)
        return token

    def wait(self, tokens: list[str], timeout_s: float = 900, what: str = "") -> list[float]:
        deadline, shown = time.monotonic() + timeout_s, time.monotonic()
        while time.monotonic() < deadline:
            done = sum(self.portals.first_answer(t) is not None for t in tokens)
            if done == len(tokens):
                break
            if what and time.monotonic() - shown > 5:
                progress(f"{what}: {done}/{len(tokens)} answered")
                shown = time.monotonic()
            time.sleep(0.05)
        return [(self.portals.first_answer(t) or float("inf")) - self.posted[t] for t in tokens]

    def storm(self, portals: list[Portal], runs_each: int, what: str) -> tuple[float, float, float]:
        started = time.monotonic()
        tokens = [self.post(p) for _ in range(runs_each) for p in portals]
        latencies = self.wait(tokens, what=what)
        elapsed = max(self.portals.first_answer(t) or float("inf") for t in tokens) - started
        return len(tokens) / elapsed, pct(latencies, 50), pct(latencies, 99)

    def quiet_while_flooded(self, flooded: Portal, quiet: Portal, flood: int, probes: int):
        tokens = [self.post(flooded) for _ in range(flood)]
        answers = []
        for n in range(probes):
            time.sleep(0.3)
            answers += self.wait([self.post(quiet)], timeout_s=60)
            progress(f"quiet probe {n + 1}/{probes}: {answers[-1]:.2f} s")
        self.wait(tokens, what="flood")
        return pct(answers, 50), pct(answers, 99)

    def twice(self) -> int:
        """Event tokens answered more than once (must be 0)."""
        return sum(len(times) > 1 for times in self.portals.answered.values())


def pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


class ThreadWorkers:
    """N Bitrix24 lane threads in this process, as `scheduler run --workers N` runs them."""

    def __init__(self, app, count: int):
        self.worker = app.extensions["worker"]
        self.worker.workers = count

    def __enter__(self):
        self.worker.start_lanes()
        return self

    def __exit__(self, *exc):
        self.worker.stop()


class ProcessWorkers:
    """N worker processes, `flask --app api scheduler work` each, as a deployment runs them."""

    def __init__(self, url: str, tmp: str, count: int):
        self.url, self.tmp, self.count = url, tmp, count
        self.procs: list[subprocess.Popen] = []

    def __enter__(self):
        env = {**os.environ, "LOYALTY_DATABASE_URL": self.url, "LOYALTY_SECRET_KEY": "bench",
               "B24_CLIENT_ID": "bench", "B24_CLIENT_SECRET": "bench",
               "LOYALTY_PUBLIC_URL": "https://bench.example.com", "LOYALTY_LOG_LEVEL": "ERROR",
               "LOYALTY_BUCKET_DIR": os.path.join(self.tmp, "buckets")}
        log = open(os.path.join(self.tmp, "workers.log"), "a")
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "api", "scheduler", "work"],
                cwd=ROOT, env=env, stdout=log, stderr=log))
        time.sleep(3)  # imported, listening
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--portals", type=int, default=100)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--mode", choices=("threads", "processes", "both"), default="both")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-workers-")
    ratelimit.DEFAULT_LIMITER = ratelimit.RateLimiter(
        clock=time.time, store=ratelimit.FileBuckets(os.path.join(tmp, "buckets")))
    portals = FakePortals(rate_per_s=RATE_PER_S, burst=BURST)
    server = serve(portals)
    port = server.server_address[1]
    url = database_url(tmp)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "B24_CLIENT_ID": "bench",
                      "B24_CLIENT_SECRET": "bench", "PUBLIC_URL": "https://bench.example.com"})
    logging.disable(logging.WARNING)  # the SMS nobody configured would fill the screen
    engine = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    modes = ["threads", "processes"] if args.mode == "both" else [args.mode]
    if engine == "SQLite":
        modes = ["threads"]
    print(f"bench/workers.py on {engine}, fake portals at 127.0.0.1:{port} "
          f"(50-150 ms, {RATE_PER_S:g} req/s burst {BURST} per portal), {os.cpu_count()} CPUs")
    print(f"{'workers':>13} | {'1 portal x100: runs/s':>21} {'p50':>6} {'p99':>6} | "
          f"{args.portals} portals x20: runs/s {'p50':>6} {'p99':>6} | quiet p50 {'p99':>6} "
          f"| req/run | twice")
    try:
        with db.connection_context():
            migrate()
        for mode in modes:
            for count in [int(n) for n in args.workers.split(",")]:
                if engine == "SQLite" and count > 1:
                    continue
                progress(f"{count} worker {mode}")
                print(row(app, portals, port, mode, count, args.portals, url, tmp), flush=True)
    finally:
        server.shutdown()
        drop_schema(url)


def row(app, portals: FakePortals, port: int, mode: str, count: int, tenants: int, url: str,
        tmp: str) -> str:
    with db.connection_context():
        one = make_portals(f"{mode[0]}{count}one", 1, port)
        many = make_portals(f"{mode[0]}{count}many", tenants, port)
        flooded, quiet = make_portals(f"{mode[0]}{count}flood", 2, port)
    bench = Bench(app, portals)
    workers = ThreadWorkers(app, count) if mode == "threads" else ProcessWorkers(url, tmp, count)
    with workers:
        before = portals.requests
        single = bench.storm(one, 100, "1 portal x100")
        spread = bench.storm(many, 20, f"{tenants} portals x20")
        requests_per_run = (portals.requests - before) / (100 + 20 * tenants)
        calm = bench.quiet_while_flooded(flooded, quiet, 500, PROBES)
    return (f"{count:>3} {mode:>9} | {single[0]:>21.1f} {single[1]:>5.2f}s {single[2]:>5.2f}s | "
            f"{spread[0]:>20.1f} {spread[1]:>5.2f}s {spread[2]:>5.2f}s | "
            f"{calm[0]:>8.2f}s {calm[1]:>5.2f}s | {requests_per_run:>7.2f} | {bench.twice()}")


if __name__ == "__main__":
    main()
