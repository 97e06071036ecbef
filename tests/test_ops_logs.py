"""Logs a person can use: one setup from the factory (level, format, request/run id),
JSON lines on demand, gunicorn through the same setup, and no secret in any line, even
at DEBUG with urllib3 and a token refresh under way."""
from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import requests
import responses

from activities.portals import B24Settings, client_for
from api import create_app, logs
from api.models import Portal

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("client-secret-xyz", "refresh-1", "refresh-2", "access-2", "stale-access")


@pytest.fixture
def captured():
    """Our handler on the root logger at DEBUG, writing to a buffer; removed afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("DEBUG", "text", stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def raw():
    """What the records said before masking: proves a secret was there to be masked."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    keeper = Keep()
    logging.getLogger().handlers.insert(0, keeper)  # before ours, which masks the record
    yield seen
    logging.getLogger().removeHandler(keeper)


@pytest.mark.parametrize("line, shown", [
    ("GET /oauth/token/?grant_type=refresh_token&client_id=app.1&client_secret=s3cr3t-abc"
     "&refresh_token=r3fr3sh HTTP/1.1",
     "GET /oauth/token/?grant_type=refresh_token&client_id=app.1&client_secret=***"
     "&refresh_token=*** HTTP/1.1"),
    ("POST https://x.bitrix24.ru/rest/app.info?auth=0123456789abcdef",
     "POST https://x.bitrix24.ru/rest/app.info?auth=***"),
    ("auth%5Baccess_token%5D=tok123&auth%5Bdomain%5D=x.ru",
     "auth%5Baccess_token%5D=***&auth%5Bdomain%5D=x.ru"),
    ("{'access_token': 'tok123', 'expires': 3600}", "{'access_token': '***', 'expires': 3600}"),
    ('{"refresh_token":"tok123","member_id":"m"}', '{"refresh_token":"***","member_id":"m"}'),
    ("Authorization: Bearer lk_abcdefghijklmnop", "Authorization: Bearer ***"),
    ("headers {'X-API-KEY': 'go-key-123'}", "headers {'X-API-KEY': '***'}"),
    ("sendSms?format=json&api_key=uni-key-123&phone=7916",
     "sendSms?format=json&api_key=***&phone=7916"),
    ("key lk_AbCdEfGh12345678 used", "key lk_*** used"),
    ("refreshed tokens of portal m1 (3 cards)", "refreshed tokens of portal m1 (3 cards)"),
])
def test_mask_hides_secret_shapes_and_keeps_the_rest(line, shown):
    assert logs.mask(line) == shown


def test_configured_secrets_are_masked_wherever_they_appear(captured):
    logs.configure("INFO", "text", literals=["plain-secret-value"], stream=captured)
    logging.getLogger("x").info("value %s inside", "plain-secret-value")
    assert "plain-secret-value" not in captured.getvalue() and "value *** inside" in \
        captured.getvalue()


def test_a_line_has_time_level_logger_and_run_id(captured):
    with logs.run_id("tick", "tick-0001"):
        logging.getLogger("scheduler.worker").info("worked %s rows", 3)
    line = captured.getvalue().strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO scheduler.worker "
                        r"\[tick-0001\] worked 3 rows", line), line


def test_json_lines_on_demand(captured):
    logs.configure("INFO", "json", stream=captured)
    try:
        raise RuntimeError("refresh_token=abc123 failed")
    except RuntimeError:
        logging.getLogger("x").exception("auth=tok999 broke")
    line = json.loads(captured.getvalue())
    assert set(line) == {"ts", "level", "logger", "run_id", "message", "exc"}
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "x", "auth=*** broke")
    assert "refresh_token=***" in line["exc"] and "abc123" not in line["exc"]


def test_the_factory_sets_it_up_from_the_settings(tmp_path):
    root = logging.getLogger()
    try:
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}", "SECRET_KEY": "k" * 40,
                    "LOG_LEVEL": "debug", "LOG_FORMAT": "json"})
        [handler] = [h for h in root.handlers if isinstance(h, logs.LoyaltyHandler)]
        assert isinstance(handler.formatter, logs.JsonFormatter) and root.level == logging.DEBUG
    finally:
        for h in [h for h in root.handlers if isinstance(h, logs.LoyaltyHandler)]:
            root.removeHandler(h)
        root.setLevel(logging.WARNING)


def test_a_wrong_level_is_refused_not_ignored(tmp_path):
    with pytest.raises(logs.BadSetting, match="LOYALTY_LOG_LEVEL='LOUD'"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}", "LOG_LEVEL": "LOUD"})


def test_each_request_has_an_id_in_its_lines_and_its_answer(app, captured):
    app.before_request(lambda: logging.getLogger("t").info("in request"))
    client = app.test_client()
    answer = client.get("/healthz", headers={"X-Request-ID": "shop-42"})
    assert answer.headers["X-Request-ID"] == "shop-42"
    assert "INFO t [shop-42] in request" in captured.getvalue()
    forged = client.get("/healthz", headers={"X-Request-ID": "x] 2026 INFO fake line"})
    assert re.fullmatch(r"req-[0-9a-f]{12}", forged.headers["X-Request-ID"])
    assert f"[{forged.headers['X-Request-ID']}] in request" in captured.getvalue()
    assert logs.current_run_id() == "-"  # nothing leaks into the next request


def test_a_scheduled_run_logs_under_its_own_id(app, captured):
    from scheduler import heartbeat

    def tick():
        logging.getLogger("scheduler.worker").info("inside")

    heartbeat.run(tick, "host:1")
    assert re.search(r"INFO scheduler.worker \[tick-[0-9a-f]{8}\] inside", captured.getvalue())


def refresh_setup(installed) -> None:
    Portal.update(access_token="stale-access").where(Portal.id == installed.id).execute()


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)


def test_a_token_refresh_at_debug_shows_no_secret(app, b24, installed, captured, raw):
    refresh_setup(installed)
    client = client_for(Portal.get_by_id(installed.id), B24Settings.from_config(app.config))
    assert client.call("app.info")["result"]
    assert b24.refreshes == 1
    logging.getLogger("activities.b24client").debug(
        "refresh with %s", {"client_secret": "client-secret-xyz", "refresh_token": "refresh-1"})
    assert "refreshed tokens of portal" in captured.getvalue()
    assert any("client-secret-xyz" in line for line in raw)  # it was there to be masked
    assert_clean(captured.getvalue())


class OAuthServer(BaseHTTPRequestHandler):
    """A loopback OAuth server, so urllib3 writes its real DEBUG line with the query."""

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"access_token": "access-2", "refresh_token": "refresh-2",
                           "expires": 1767232800, "expires_in": 3600,
                           "member_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                           "client_endpoint": "https://example.bitrix24.com/rest/"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def oauth_server():
    server = HTTPServer(("127.0.0.1", 0), OAuthServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/oauth/token/"
    server.shutdown()
    server.server_close()


def test_urllib3_debug_lines_of_a_refresh_show_no_secret(app, b24, installed, oauth_server,
                                                          captured, raw):
    b24.rsps.add_passthru(oauth_server)
    app.config["B24_OAUTH_URL"] = oauth_server
    refresh_setup(installed)
    client = client_for(Portal.get_by_id(installed.id), B24Settings.from_config(app.config),
                        requests.Session())
    b24.tokens = {"access-2"}
    assert client.call("app.info")["result"]
    urllib3_lines = [line for line in captured.getvalue().splitlines()
                     if "urllib3.connectionpool" in line and "/oauth/token/" in line]
    assert urllib3_lines, captured.getvalue()
    # The refresh is a form POST, so its line carries no query; a GET would (the documented
    # form of the call): urllib3's own line for it, in urllib3's own format, is masked too.
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s', "https", "oauth.bitrix.info", 443, "GET",
        "/oauth/token/?grant_type=refresh_token&client_id=local.1&client_secret="
        "client-secret-xyz&refresh_token=refresh-1", "HTTP/1.1", 200, 312)
    assert any("client_secret=client-secret-xyz" in line for line in raw)
    assert "client_secret=***&refresh_token=*** HTTP/1.1" in captured.getvalue()
    assert_clean(captured.getvalue())


def test_gunicorn_logs_through_the_same_setup(tmp_path):
    """The deploy/ example, run for real on loopback: JSON lines, the access log with our
    request id, a token in the query masked."""
    env = {**os.environ, "LOYALTY_DATABASE_URL": f"sqlite:///{tmp_path / 'g.sqlite3'}",
           "LOYALTY_SECRET_KEY": "k" * 64, "LOYALTY_LOG_FORMAT": "json",
           "LOYALTY_BIND": "127.0.0.1:0", "LOYALTY_WORKERS": "1"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip(f"no gunicorn next to {sys.executable}")
    proc = subprocess.Popen([str(gunicorn), "-c", "deploy/gunicorn.conf.py", "--no-control-socket",
                             "api:create_app()"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines, port = [], None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", lines[-1])
            port = found and found.group(1)
        assert port, lines
        answer = requests.get(f"http://127.0.0.1:{port}/healthz?auth=tok-secret-9",
                              headers={"X-Request-ID": "ops-1"}, timeout=10)
        assert answer.headers["X-Request-ID"] == "ops-1"
        while not any("gunicorn.access" in line for line in lines) and \
                time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
    finally:
        proc.terminate()
        rest, _ = proc.communicate(timeout=20)
    records = [json.loads(line) for line in [*lines, *rest.splitlines()] if line.strip()]
    [access] = [r for r in records if r["logger"] == "gunicorn.access"]
    assert '"GET /healthz?auth=*** HTTP/1.1"' in access["message"]
    assert access["message"].endswith("id=ops-1") and "tok-secret-9" not in json.dumps(records)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"]
               for r in records)
