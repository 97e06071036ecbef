"""Browser tests: Debian's chromium driven by Playwright for Python.

The app runs on 127.0.0.1 (werkzeug in a thread) with a temporary SQLite database; a
host page on the same server POSTs the Bitrix24 frame form into an <iframe>, as the
portal does. The portal's REST calls are answered by the fake portal behind `responses`
(it patches `requests` for the whole process, so the server thread is covered). The
Bitrix24 JS library is either stubbed or made to fail; nothing leaves the machine.

No browser (or no Playwright): the tests are skipped with the reason. `make test`
installs chromium, so CI runs them. Screenshots go to test-artifacts/screenshots/.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import responses
from b24fake import APP_TOKEN, CLIENT_ID, ENDPOINT, MEMBER
from flask import request
from test_pages import FRAME_FORM, QUERY, PagesPortal
from werkzeug.serving import make_server

from api import create_app
from api.db import db
from api.migrations import migrate
from api.models import Portal

CHROMIUM = os.environ.get("LOYALTY_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# No network but loopback: every other host name resolves to nothing.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
FRAME_NAME = f"{QUERY['DOMAIN']}|{QUERY['PROTOCOL']}|{QUERY['APP_SID']}"  # as Bitrix24 names it
BX24_HOST = re.compile(r"^https?://api\.bitrix24\.com/")
# Stands in for BX24.js: init at once, and fitWindow asks the host to resize the frame.
BX24_STUB = """window.BX24 = {
  init: function (cb) { setTimeout(cb, 0); },
  fitWindow: function () {
    window.__fits = (window.__fits || 0) + 1;
    parent.postMessage({loyaltyFit: document.documentElement.scrollHeight}, "*");
  }
};"""
_shots: list[Path] = []


def pytest_terminal_summary(terminalreporter):
    if _shots:
        terminalreporter.write_sep("-", f"browser screenshots: {len(_shots)} in {ARTIFACTS}")


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no browser at {CHROMIUM}: `make test` installs Debian's chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (requirements.txt)")
    playwright = sync_playwright().start()
    try:
        # Playwright gives each launch a fresh temporary --user-data-dir of its own.
        found = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    except Exception as exc:  # noqa: BLE001 - any launch failure means "cannot test here"
        playwright.stop()
        pytest.skip(f"chromium at {CHROMIUM} did not start: {str(exc).splitlines()[0]}")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    yield found
    found.close()
    playwright.stop()


@dataclass
class Live:
    base: str
    portal: Portal
    fake: PagesPortal

    def host_url(self, auth: str, lang: str = "ru", target: str = "/b24/app",
                 placement: str = "DEFAULT", options: str = "{}") -> str:
        query = {"auth": auth, "lang": lang, "target": target, "placement": placement,
                 "options": options}
        return f"{self.base}/__host?{urlencode(query)}"


def host_page():
    """The portal's side: the frame form POSTed into the iframe, and fitWindow honoured."""
    query = {**QUERY, "LANG": request.args.get("lang", "ru")}
    fields = {**FRAME_FORM, "AUTH_ID": request.args.get("auth", ""),
              "PLACEMENT": request.args.get("placement", "DEFAULT"),
              "PLACEMENT_OPTIONS": request.args.get("options", "{}")}
    target = request.args.get("target", "/b24/app")
    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in fields.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Bitrix24 (test host)</title>
<style>body{{margin:0;background:#eef2f4;font:14px sans-serif}}
.bar{{height:52px;background:#1f2b3d;color:#fff;padding:16px 24px;box-sizing:border-box}}
iframe{{display:block;border:0;width:100%;height:900px;background:#fff}}</style></head>
<body><div class="bar">Bitrix24 · Программа лояльности (test host)</div>
<form id="frame-form" method="post" target="{html.escape(FRAME_NAME)}"
      action="{html.escape(target)}?{html.escape(urlencode(query))}">{inputs}
<noscript><button id="open-app" type="submit">Открыть приложение</button></noscript></form>
<iframe id="app" name="{html.escape(FRAME_NAME)}"></iframe>
<script>
window.addEventListener("message", function (e) {{
  if (e.data && e.data.loyaltyFit) {{
    document.getElementById("app").style.height = e.data.loyaltyFit + "px";
  }}
}});
document.getElementById("frame-form").submit();
</script></body></html>"""


@pytest.fixture
def live(tmp_path):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = PagesPortal(rsps)
        app = create_app({"TESTING": True, "SECRET_KEY": "browser-secret",
                          "DATABASE_URL": f"sqlite:///{tmp_path / 'browser.sqlite3'}",
                          "B24_CLIENT_ID": CLIENT_ID, "B24_CLIENT_SECRET": "client-secret-xyz",
                          "PUBLIC_URL": "https://loyalty.example.com"})
        app.add_url_rule("/__host", "test_host", host_page)
        db.connect(reuse_if_open=True)
        migrate()
        portal = Portal.create(member_id=MEMBER, domain=QUERY["DOMAIN"], client_endpoint=ENDPOINT,
                               access_token="access-1", refresh_token="refresh-1",
                               application_token=APP_TOKEN, status="active",
                               installed_by_user_id=1)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Live(f"http://127.0.0.1:{server.server_port}", portal, fake)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            if not db.is_closed():
                db.close()


@pytest.fixture(params=["stub"])
def bx24(request):
    """How api.bitrix24.com answers: "stub" (a fake BX24) or "fail" (unreachable)."""
    return request.param


@pytest.fixture
def page(browser, bx24):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ru-RU")

    def bitrix24_js(route):
        if bx24 == "stub":
            route.fulfill(status=200, content_type="application/javascript", body=BX24_STUB)
        else:
            route.abort("namenotresolved")

    context.route(BX24_HOST, bitrix24_js)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def shot(page):
    """shot("name"): a full-page screenshot of the host with the app in its frame."""
    def take(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        _shots.append(path)
        return path
    return take
