"""A real HTTP server on loopback playing a portal and its OAuth server, for what `responses`
cannot show: urllib3's own DEBUG log lines, and several processes sharing one server.

Refresh tokens are single-use and rotate (the old pair dies when a new one is issued), so
two processes spending the same refresh token end with one of them holding a dead pair.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Manager
from urllib.parse import parse_qsl, urlparse


class OAuthPortal:
    def __init__(self, refresh_delay_s: float = 0.0):
        self.manager = Manager()  # state shared with forked children's requests
        self.state = self.manager.dict(access="access-1", refresh="refresh-1", refreshes=0,
                                       refused=0, generation=1)
        self.lock = self.manager.Lock()
        self.refresh_delay_s = refresh_delay_s
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.manager.shutdown()

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                path = urlparse(self.path).path
                if path == "/oauth/token/":
                    status, body = outer.refresh(dict(parse_qsl(raw)))
                elif self.headers.get("Content-Type", "").startswith("application/json"):
                    status, body = outer.method(path.rsplit("/", 1)[-1], json.loads(raw or "{}"))
                else:  # a form, as app.info at the OAuth server is asked
                    status, body = outer.method(path.rsplit("/", 1)[-1], dict(parse_qsl(raw)))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def refresh(self, form: dict) -> tuple[int, dict]:
        with self.lock:
            valid = form.get("refresh_token") == self.state["refresh"]
        time.sleep(self.refresh_delay_s)  # a slow OAuth server widens the race window
        with self.lock:
            if not valid or form.get("refresh_token") != self.state["refresh"]:
                self.state["refused"] += 1
                return 400, {"error": "invalid_grant", "error_description": "dead token"}
            n = self.state["generation"] + 1
            self.state.update(access=f"access-{n}", refresh=f"refresh-{n}", generation=n,
                              refreshes=self.state["refreshes"] + 1)
        return 200, {"access_token": f"access-{n}", "refresh_token": f"refresh-{n}",
                     "expires": int(time.time()) + 3600, "expires_in": 3600,
                     "member_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                     "client_endpoint": self.url + "rest/", "domain": "oauth.bitrix.info"}

    def method(self, name: str, body: dict) -> tuple[int, dict]:
        with self.lock:
            current = self.state["access"]
        if body.get("auth") != current:
            return 401, {"error": "expired_token",
                         "error_description": "The access token provided has expired."}
        return 200, {"result": {"ID": "1", "NAME": "Admin", "method": name}}
