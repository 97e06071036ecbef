"""A webhook receiver on loopback, as a careful client would write one: it checks the
signature and the timestamp, drops an id it has already seen, and keeps what it got."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from api.webhooks import signing


class Receiver:
    def __init__(self):
        self.secret = None
        self.events: list[dict] = []  # first receipt of each id, in arrival order
        self.raw: list[str] = []  # every request's webhook-id, repeats included
        self.refused: list[str] = []  # bad signatures
        self.fail_ids: dict[str, int] = {}  # event id -> how many more times to answer 500
        self.status = 200
        self.redirect_to = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.handle(self, body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, request, body: bytes):
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self.lock:
            event_id = headers.get("webhook-id", "")
            self.raw.append(event_id)
            if not signing.verify(self.secret, headers, body, int(time.time())):
                self.refused.append(event_id)
                return self._answer(request, 401)
            if self.redirect_to:
                return self._answer(request, 302, {"Location": self.redirect_to})
            if self.fail_ids.get(event_id, 0) > 0 or self.status >= 300:
                self.fail_ids[event_id] = self.fail_ids.get(event_id, 0) - 1
                return self._answer(request, self.status if self.status >= 300 else 500)
            if event_id not in {e["id"] for e in self.events}:
                self.events.append(json.loads(body))
        self._answer(request, 200)

    @staticmethod
    def _answer(request, status, headers=None):
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def types(self, card_number=None):
        return [e["type"] for e in self.events
                if card_number is None or e["data"]["card"]["number"] == card_number]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
