"""Issue 11, each attack reproduced: who may bind the app, whose token acts, where the
refresh goes and where secrets may not go. Both databases."""
from __future__ import annotations

import logging
import multiprocessing

import pytest
from b24fake import APP_TOKEN, ENDPOINT, MEMBER, workflow_form, post_form
from oauthserver import OAuthPortal
from test_b24_install import FRAME, FRAME_QUERY, callback_form

from activities import proof
from activities.portals import B24Settings, PortalTokenStore, client_for
from api.auth import create_key
from api.db import db, release_all
from api.models import ActivityRun, Portal

MANAGER_TOKEN = "manager-genuine-token"


@pytest.fixture
def b24m(b24):
    """The fake portal where a manager (user 7, not an admin) holds a genuine token."""
    b24.tokens.add(MANAGER_TOKEN)
    b24.user_of = lambda token: 7 if token == MANAGER_TOKEN else 1
    return b24


def as_manager(form: dict, app_token: str = "attacker-chosen") -> dict:
    return {**form, "auth[access_token]": MANAGER_TOKEN, "auth[refresh_token]": "mgr-refresh",
            "auth[application_token]": app_token, "auth[user_id]": "7"}


def test_a_managers_genuine_token_cannot_rebind_the_app(client, b24m, installed):
    assert client.post("/b24/events", data=as_manager(callback_form())).status_code == 401
    assert client.post("/b24/install", data=as_manager(callback_form())).status_code == 401
    frame = {**FRAME, "AUTH_ID": MANAGER_TOKEN, "APPLICATION_TOKEN": "attacker-chosen"}
    assert client.post("/b24/install" + FRAME_QUERY, data=frame).status_code == 401
    portal = Portal.get_by_id(installed.id)
    assert (portal.application_token, portal.access_token) == (APP_TOKEN, "access-1")
    assert b24m.oauth_requests == [] and b24m.requests == 0  # refused before any probe
    # The real portal's calls are still obeyed.
    assert post_form(client, "/b24/activities/loyalty_card_info",
                     workflow_form("loyalty_card_info")).get_json() == {"status": "queued"}
    assert ActivityRun.select().count() == 1


def test_a_manager_cannot_install_where_nothing_is_bound_yet(client, b24m):
    response = client.post("/b24/install", data=as_manager(callback_form(), APP_TOKEN))
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "not_admin"
    assert Portal.select().count() == 0


def test_a_forged_install_of_an_unknown_portal_calls_nobody_it_named(client, b24):
    forged = {**FRAME, "member_id": "never-seen", "AUTH_ID": "forged"}
    response = client.post("/b24/install?DOMAIN=169.254.169.254&PROTOCOL=1", data=forged)
    assert response.status_code == 401 and response.mimetype == "text/html"
    event = {**callback_form(), "auth[member_id]": "never-seen", "auth[access_token]": "forged",
             "auth[client_endpoint]": "https://169.254.169.254/rest/",
             "auth[domain]": "169.254.169.254"}
    assert client.post("/b24/events", data=event).status_code == 401
    hosts = {call.request.url.split("/")[2] for call in b24.rsps.calls}
    assert hosts == {"oauth.bitrix.info"}  # only the OAuth server was asked
    assert Portal.select().count() == 0


def test_a_refused_frame_install_shows_the_admin_a_page_not_json(client, b24m):
    """The admin sees the frame: the reason is a page in their language, never
    installFinish (a refused install must not look finished to the portal)."""
    frame = {**FRAME, "AUTH_ID": MANAGER_TOKEN}
    response = client.post("/b24/install" + FRAME_QUERY, data=frame)
    page = response.get_data(as_text=True)
    assert response.status_code == 403 and response.mimetype == "text/html"
    assert 'data-refused="not_admin"' in page and "installFinish" not in page
    assert MANAGER_TOKEN not in page and Portal.select().count() == 0


def test_an_oauth_server_outside_the_allow_list_is_never_asked(client, b24):
    form = {**callback_form(), "auth[server_endpoint]": "https://evil.example.com/rest/"}
    assert client.post("/b24/install", data=form).status_code == 401
    assert len(b24.rsps.calls) == 0 and Portal.select().count() == 0


def test_a_genuine_token_of_another_portal_does_not_install_this_one(client, b24):
    form = {**callback_form(), "auth[member_id]": "another-member"}
    response = client.post("/b24/install", data=form)
    assert response.status_code == 403 and Portal.select().count() == 0
    form = {**callback_form(), "auth[domain]": "other.bitrix24.com"}
    assert client.post("/b24/install", data=form).status_code == 403


def test_the_install_keeps_the_endpoint_the_oauth_server_named(client, b24):
    form = {**callback_form(), "auth[client_endpoint]": "https://evil.example.com/rest/"}
    assert client.post("/b24/install", data=form).status_code == 200
    portal = Portal.get(Portal.member_id == MEMBER)
    assert portal.client_endpoint == ENDPOINT
    assert portal.server_endpoint == "https://oauth.bitrix.info/rest/"
    assert not any("evil" in call.request.url for call in b24.rsps.calls)


def test_a_rest_only_portal_cannot_be_claimed(client, b24m):
    portal = Portal.create(member_id=MEMBER, status="api")
    create_key(portal, "web site")
    assert client.post("/b24/install", data=callback_form(tokens=False)).status_code == 401
    assert client.post("/b24/events", data=as_manager(callback_form())).status_code == 403
    stored = Portal.get_by_id(portal.id)
    assert (stored.status, stored.application_token, stored.client_endpoint) == ("api", None, None)
    # Its admin claims it the same way any install proves itself.
    assert client.post("/b24/events", data=callback_form()).status_code == 200
    assert Portal.get_by_id(portal.id).status == "active"


def test_every_proof_has_a_short_timeout(client, b24, monkeypatch):
    seen = []
    original = proof.requests.Session.post

    def spy(self, url, **kwargs):
        seen.append(kwargs.get("timeout"))
        return original(self, url, **kwargs)

    monkeypatch.setattr(proof.requests.Session, "post", spy)
    client.post("/b24/install", data=callback_form())
    assert seen and all(t is not None and t <= proof.PROOF_TIMEOUT_S for t in seen)


def test_the_refresh_goes_to_the_oauth_server_of_the_portal(app, b24, installed):
    b24.oauth_host = "oauth.bitrix24.tech"
    Portal.update(server_endpoint="https://oauth.bitrix24.tech/rest/").execute()
    b24.tokens = {"access-0"}  # the stored access-1 has expired
    with app.app_context():
        client = client_for(Portal.get_by_id(installed.id), B24Settings.from_config(app.config))
    assert client.call("app.info")  # expired_token, refresh at bitrix24.tech, repeat
    assert [u.split("/")[2] for u in b24.oauth_requests] == ["oauth.bitrix24.tech"]
    assert Portal.get_by_id(installed.id).refresh_token == "refresh-2"


def test_a_refresh_never_puts_secrets_where_urllib3_logs_them(app, installed, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's connection pool included
    with OAuthPortal() as server, app.app_context():
        Portal.update(client_endpoint=server.url + "rest/", access_token="stale").execute()
        settings = B24Settings.from_config({**app.config, "B24_OAUTH_URL": server.url})
        assert client_for(Portal.get_by_id(installed.id), settings).call("profile")
        assert server.state["refreshes"] == 1
        proof.app_info(server.url, "access-2")  # the install's proof, the same way
    logged = caplog.text
    assert "urllib3.connectionpool" in logged and "/oauth/token/" in logged
    for secret in ("client-secret-xyz", "refresh-1", "refresh-2", "access-2", "stale"):
        assert secret not in logged


def _refresh_in_child(member_id: str, oauth_url: str, results) -> None:
    db.connect(reuse_if_open=True)
    try:
        portal = Portal.get(Portal.member_id == member_id)
        settings = B24Settings("local.x", "client-secret-xyz", oauth_url, "")
        client_for(portal, settings).call("profile")
        results.append("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.append(f"{type(exc).__name__}: {exc}")
    finally:
        db.close()


def test_two_processes_refreshing_at_once_end_with_one_valid_pair(app, installed):
    with OAuthPortal(refresh_delay_s=0.5) as server:
        Portal.update(client_endpoint=server.url + "rest/", access_token="stale").execute()
        results = server.manager.list()
        release_all()  # children open their own connections; none is shared across a fork
        ctx = multiprocessing.get_context("fork")
        children = [ctx.Process(target=_refresh_in_child, args=(MEMBER, server.url, results))
                    for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(30)
        db.connect(reuse_if_open=True)
        stored = Portal.get_by_id(installed.id)
        assert list(results) == ["ok", "ok"]
        assert server.state["refreshes"] == 1 and server.state["refused"] == 0
        assert (stored.access_token, stored.refresh_token) == (server.state["access"],
                                                               server.state["refresh"])


def test_the_token_store_lock_is_the_databases(app, installed):
    store = PortalTokenStore()
    with store.lock(MEMBER):
        assert db.in_transaction()


# --- hygiene: request limits and the secret key -----------------------------------------------

def test_a_body_over_the_limit_is_413_with_the_usual_error_body(client, api):
    huge = b'{"phone": "' + b"7" * (2 * 1024 * 1024) + b'"}'
    response = client.post("/api/v1/cards", data=huge, content_type="application/json",
                           headers=api.headers("k1"))
    assert response.status_code == 413
    assert set(response.get_json()["error"]) == {"code", "message", "fields"}
    form = client.post("/b24/events", data={"event": "x" * (2 * 1024 * 1024)})
    assert form.status_code == 413 and form.get_json()["error"]["code"]


def test_json_nested_too_deep_is_400_not_500(client, api):
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/v1/cards", data=deep, content_type="application/json",
                           headers=api.headers("k2"))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "json_too_deep"
    fine = client.post("/api/v1/cards", json={"phone": "[[[{{{", "last_name": "]]]"},
                       headers=api.headers("k3"))
    assert fine.status_code == 422  # brackets inside strings do not count


def test_a_chunked_body_nested_too_deep_is_400_not_500(app, api):
    # No Content-Length: the body arrives chunked (gunicorn marks the stream terminated).
    import io

    from werkzeug.test import EnvironBuilder

    deep = b"[" * 100_000 + b"]" * 100_000
    environ = EnvironBuilder(path="/api/v1/cards", method="POST", data=deep,
                             content_type="application/json",
                             headers={**api.headers("k4"), "Transfer-Encoding": "chunked"},
                             ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": io.BytesIO(deep), "wsgi.input_terminated": True})
    status = []
    body = b"".join(app.wsgi_app(environ, lambda code, headers, exc=None: status.append(code)))
    assert status == ["400 BAD REQUEST"], body[:200]
    assert b"json_too_deep" in body


def test_without_a_secret_key_every_process_shares_one_kept_key(tmp_path, database_url):
    from api import create_app

    path = tmp_path / "instance" / "secret_key"
    config = {"TESTING": True, "DATABASE_URL": database_url, "SECRET_KEY_FILE": str(path)}
    first, second = create_app(dict(config)), create_app(dict(config))
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert len(first.config["SECRET_KEY"]) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
    path.chmod(0o644)
    with pytest.raises(RuntimeError, match="readable by others"):
        create_app(dict(config))


def test_a_call_of_the_installer_heals_a_dead_stored_pair(client, b24, installed):
    Portal.update(refresh_token="dead", token_expires_at=1).execute()
    b24.tokens.add("run-as-user-token")  # genuine: the OAuth server vouches for it
    post_form(client, "/b24/activities/loyalty_card_info", workflow_form("loyalty_card_info"))
    stored = Portal.get_by_id(installed.id)
    assert (stored.access_token, stored.refresh_token) == ("run-as-user-token", "run-as-refresh")


def test_tokens_of_a_call_are_kept_only_when_the_oauth_server_vouches(client, b24, installed):
    Portal.update(refresh_token="dead", token_expires_at=1).execute()  # "run-as-user-token"
    post_form(client, "/b24/activities/loyalty_card_info",  # is not genuine here
              workflow_form("loyalty_card_info"))
    assert Portal.get_by_id(installed.id).refresh_token == "dead"
    Portal.update(token_expires_at=2_000_000_000).execute()  # fresh: nothing is even asked
    b24.oauth_requests.clear()
    post_form(client, "/b24/activities/loyalty_card_info",
              workflow_form("loyalty_card_info", token="another|run|token"))
    assert b24.oauth_requests == []


def test_a_stored_endpoint_off_the_allow_list_never_receives_the_secret():
    assert proof.token_url("http://127.0.0.1:9/rest/", None) == "https://oauth.bitrix.info/oauth/token/"
    assert proof.token_url("https://oauth.bitrix24.tech/rest/", None) == \
        "https://oauth.bitrix24.tech/oauth/token/"
    assert proof.token_url("https://oauth.bitrix24.tech/rest/", "http://127.0.0.1:9/") == \
        "http://127.0.0.1:9/oauth/token/"


def test_json_depth_is_counted_outside_strings_exactly_at_the_limit():
    from api.limits import JSON_DEPTH_MAX, too_deep

    def nested(depth: int, inner: bytes = b"1") -> bytes:
        return b"[" * depth + inner + b"]" * depth

    assert not too_deep(nested(JSON_DEPTH_MAX))
    assert too_deep(nested(JSON_DEPTH_MAX + 1))
    assert too_deep(b'{"a":' * (JSON_DEPTH_MAX + 1) + b"1" + b"}" * (JSON_DEPTH_MAX + 1))
    # Brackets in strings open nothing, however many there are.
    assert not too_deep(nested(JSON_DEPTH_MAX, b'"' + b"[{" * 100 + b'"'))
