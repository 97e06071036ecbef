"""Fake Bitrix24 portals on a loopback HTTP server, for workers in other processes (which
`responses` cannot reach): one tenant per path (`/<tenant>/rest/<method>`), a response
time, and the portal's rate limit (a leaky bucket per tenant; above it, 503
QUERY_LIMIT_EXCEEDED). It answers what activity runs need (crm.deal.get, crm.contact.get,
bizproc.event.send, batch) and remembers when each event token was answered, every time.
Used by tests/test_worker_processes.py and bench/workers.py.
"""
from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl

BATCH_MAX = 50


class FakePortals:
    """Every tenant's state: its bucket, and when each event token was answered."""

    def __init__(self, rate_per_s: float = 2.0, burst: int = 50,
                 response_s: tuple[float, float] = (0.05, 0.15)):
        self.rate_per_s, self.burst, self.response_s = rate_per_s, burst, response_s
        self.guard = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}
        self.answered: dict[str, list[float]] = {}  # event token -> every time it was sent
        self.requests = 0
        self.refused = 0
        # Called with (tenant, method, commands) before a request is answered (tests stall one).
        self.before: Callable[[str, str, dict], None] | None = None

    def admit(self, tenant: str) -> bool:
        with self.guard:
            self.requests += 1
            now = time.monotonic()
            tokens, stamp = self.buckets.get(tenant, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate_per_s)
            if tokens < 1:
                self.buckets[tenant] = (tokens, now)
                self.refused += 1
                return False
            self.buckets[tenant] = (tokens - 1, now)
            return True

    def first_answer(self, token: str) -> float | None:
        with self.guard:
            times = self.answered.get(token)
            return times[0] if times else None

    def run(self, method: str, params: dict):
        if method == "crm.deal.get":
            return {"ID": str(params.get("id")), "CONTACT_ID": "42", "OPPORTUNITY": "1000.00"}
        if method == "crm.contact.get":
            return {"ID": "42", "NAME": "Анна", "LAST_NAME": "Петрова"}
        if method == "bizproc.event.send":
            with self.guard:
                self.answered.setdefault(str(params.get("EVENT_TOKEN")), []).append(time.monotonic())
        return True

    def batch(self, cmd: dict) -> dict:
        if len(cmd) > BATCH_MAX:
            raise ValueError("more than 50 commands in a batch")
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
            time.sleep(random.uniform(*portals.response_s))
            if portals.before is not None:
                portals.before(tenant, method, body.get("cmd") or {})
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


def serve(portals: FakePortals) -> ThreadingHTTPServer:
    """Start the server on a free loopback port (`server.server_address[1]`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(portals))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
