"""The REST API opens no cookie session (api.sessions); the app's pages still do."""
from __future__ import annotations

from flask import session
from flask.sessions import NullSession


def _cookie(app) -> str:
    signed = app.session_interface.get_signing_serializer(app).dumps({"seen": 1})
    return f"{app.config['SESSION_COOKIE_NAME']}={signed}"


def test_an_api_request_gets_the_null_session_whatever_cookie_it_sends(app):
    with app.test_request_context("/api/v1/cards/79161234567", headers={"Cookie": _cookie(app)}):
        assert isinstance(session._get_current_object(), NullSession)
        assert "seen" not in session


def test_a_page_request_still_reads_its_cookie_session(app):
    with app.test_request_context("/b24/app", headers={"Cookie": _cookie(app)}):
        assert not isinstance(session._get_current_object(), NullSession)
        assert session["seen"] == 1


def test_an_api_answer_sets_no_cookie_and_no_vary(app, client):
    response = client.get("/api/v1/healthz", headers={"Cookie": _cookie(app)})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")
