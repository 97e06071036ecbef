"""Worker benchmark: activity runs from the handler's POST to bizproc.event.send.

A local fake portal server (one HTTP server on 127.0.0.1, one tenant per path, 50–150 ms per
response, the real rate limit per portal: 2 requests a second, burst 50, 503
QUERY_LIMIT_EXCEEDED above it) and the app's own workers, 1, 2 and 4 Bitrix24 lane threads.
Prints for each: one portal answering 100 accruals started at once (runs/s, p50/p99), 100
portals with 20 runs each (runs/s, p50/p99), and a quiet portal's answer time while another
portal is flooded with 500 runs. Not a test: `python bench/workers.py [--portals 100]`.
PostgreSQL at LOYALTY_TEST_POSTGRES_URL when it answers (a schema of its own), else SQLite
(one worker: more threads are not used there).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time

# The project's root, not bench/, first on sys.path: bench/http.py would hide the stdlib's http.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from urllib.parse import parse_qsl, urlencode


from api import create_app  # noqa: E402
from api.db import connect, db  # noqa: E402
from api.ledger import cards  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Portal  # noqa: E402
from background import ratelimit  # noqa: E402

PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = f"bench_workers_{os.getpid()}"
APP_TOKEN = "bench-app-token"
RATE_PER_S, BURST = 2.0, 50


class FakePortals:
    """Every tenant's state: its bucket, and when each event token was answered."""

    def __init__(self):
        self.guard = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}
        self.answered: dict[str, float] = {}
        self.requests = 0

    def admit(self, tenant: str) -> bool:
        with self.guard:
            self.requests += 1
            now = time.monotonic()
            tokens, stamp = self.buckets.get(tenant, (float(BURST), now))
            tokens = min(float(BURST), tokens + (now - stamp) * RATE_PER_S)
            if tokens < 1:
                self.buckets[tenant] = (tokens, now)
                return False
            self.buckets[tenant] = (tokens - 1, now)
            return True

    def run(self, method: str, params: dict):
        if method == "crm.deal.get":
            return {"ID": str(params.get("id")), "CONTACT_ID": "42", "OPPORTUNITY": "1000.00"}
        if method == "crm.contact.get":
            return {"ID": "42", "NAME": "Анна", "LAST_NAME": "Петрова"}
        if method == "bizproc.event.send":
            with self.guard:
                self.answered.setdefault(str(params.get("EVENT_TOKEN")), time.monotonic())
        return True

    def batch(self, cmd: dict) -> dict:
        results = {}
        for key, command in cmd.items():
            method, _, query = command.partition("?")
            results[key] = self.run(method, dict(parse_qsl(query)))
        return {"result": results, "result_error": [], "result_total": [], "result_next": [],
                "result_time": []}


def handler_for(portals: FakePortals):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            _, tenant, _, method = self.path.split("/", 3)
            time.sleep(random.uniform(0.05, 0.15))  # a portal's response time
            if not portals.admit(tenant):
                return self._reply(503, {"error": "QUERY_LIMIT_EXCEEDED",
                                         "error_description": "Too many requests"})
            result = portals.batch(body.get("cmd") or {}) if method == "batch" \
                else portals.run(method, body)
            self._reply(200, {"result": result, "time": {}})

        def _reply(self, status: int, payload: dict):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    return Handler


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
    def __init__(self, app, portals: FakePortals, port: int):
        self.app, self.portals, self.port = app, portals, port
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

    def wait(self, tokens: list[str], timeout_s: float = 600) -> list[float]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(t in self.portals.answered for t in tokens):
                break
            time.sleep(0.02)
        return [self.portals.answered.get(t, float("inf")) - self.posted[t] for t in tokens]

    def storm(self, portals: list[Portal], runs_each: int) -> tuple[float, float, float]:
        started = time.monotonic()
        tokens = [self.post(p) for _ in range(runs_each) for p in portals]
        latencies = self.wait(tokens)
        elapsed = max(self.portals.answered[t] for t in tokens) - started
        return len(tokens) / elapsed, pct(latencies, 50), pct(latencies, 99)

    def quiet_while_flooded(self, flooded: Portal, quiet: Portal, flood: int, probes: int):
        tokens = [self.post(flooded) for _ in range(flood)]
        answers = []
        for _ in range(probes):
            time.sleep(0.5)
            answers += self.wait([self.post(quiet)], timeout_s=60)
        self.wait(tokens)
        return pct(answers, 50), pct(answers, 99)


def pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--portals", type=int, default=100)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-workers-")
    ratelimit.DEFAULT_LIMITER = ratelimit.RateLimiter(
        clock=time.time, store=ratelimit.FileBuckets(os.path.join(tmp, "buckets")))
    portals = FakePortals()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(portals))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    url = database_url(tmp)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "B24_CLIENT_ID": "bench",
                      "B24_CLIENT_SECRET": "bench", "PUBLIC_URL": "https://bench.example.com"})
    logging.disable(logging.WARNING)  # the SMS nobody configured would fill the screen
    engine = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"bench/workers.py on {engine}, fake portals at 127.0.0.1:{port} "
          f"(50-150 ms, {RATE_PER_S:g} req/s burst {BURST} per portal), {os.cpu_count()} CPUs")
    print(f"{'workers':>7} | {'1 portal x100: runs/s':>21} {'p50':>6} {'p99':>6} | "
          f"{args.portals} portals x20: runs/s {'p50':>6} {'p99':>6} | quiet p50 {'p99':>6} | req/run")
    try:
        with db.connection_context():
            migrate()
        for count in [int(n) for n in args.workers.split(",")]:
            if engine == "SQLite" and count > 1:
                continue
            print(row(app, portals, port, count, args.portals), flush=True)
    finally:
        server.shutdown()
        drop_schema(url)


def row(app, portals: FakePortals, port: int, count: int, tenants: int) -> str:
    worker = app.extensions["worker"]
    worker.workers = count
    with db.connection_context():
        one = make_portals(f"w{count}one", 1, port)
        many = make_portals(f"w{count}many", tenants, port)
        flooded, quiet = make_portals(f"w{count}flood", 2, port)
    bench = Bench(app, portals, port)
    worker.start_lanes()
    try:
        before = portals.requests
        single = bench.storm(one, 100)
        spread = bench.storm(many, 20)
        requests_per_run = (portals.requests - before) / (100 + 20 * tenants)
        calm = bench.quiet_while_flooded(flooded, quiet, 500, 10)
    finally:
        worker.stop()
    return (f"{count:>7} | {single[0]:>21.1f} {single[1]:>5.2f}s {single[2]:>5.2f}s | "
            f"{spread[0]:>20.1f} {spread[1]:>5.2f}s {spread[2]:>5.2f}s | "
            f"{calm[0]:>8.2f}s {calm[1]:>5.2f}s | {requests_per_run:.2f}")


if __name__ == "__main__":
    main()
