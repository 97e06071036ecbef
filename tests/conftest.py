"""Fixtures built on the app factory. Database tests run on SQLite and again on
PostgreSQL when it answers at LOYALTY_TEST_POSTGRES_URL (skipped with the reason otherwise)."""
from __future__ import annotations

import os

import pytest

from api import create_app
from api.db import connect, db, use
from api.migrations import migrate
from peewee import OperationalError

from api.models import ALL_TABLES, Portal

PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Each test session works in a schema of its own, so two runs (a developer's and CI's,
# or parallel workers) never trample each other's tables; it is dropped at the end.
PG_SCHEMA = f"loyalty_test_{os.getpid()}"
_pg_state: dict = {}


def _schema_url() -> str:
    joiner = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{joiner}options=-c%20search_path%3D{PG_SCHEMA}"


def _postgres_ready() -> str | None:
    """None when usable, else why not. Only a failed connection skips; any other
    failure is a real error and fails the tests."""
    if "why" not in _pg_state:
        try:
            admin = connect(PG_URL)
            admin.connect()
        except OperationalError as exc:
            _pg_state["why"] = f"PostgreSQL not reachable at {PG_URL}: {str(exc).strip()[:120]}"
            return _pg_state["why"]
        admin.execute_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
        admin.execute_sql(f"CREATE SCHEMA {PG_SCHEMA}")
        admin.close()
        database = connect(_schema_url())
        use(database)
        with database.connection_context():
            migrate()
        _pg_state["why"] = None
    return _pg_state["why"]


def _truncate_postgres() -> None:
    names = ", ".join(f'"{m._meta.table_name}"' for m in ALL_TABLES)
    db.execute_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schema():
    yield
    if _pg_state.get("why", "unused") is None:
        admin = connect(PG_URL)
        with admin.connection_context():
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'loyalty.sqlite3'}"
    why = _postgres_ready()
    if why:
        pytest.skip(why)
    return _schema_url()


@pytest.fixture
def app(database_url):
    app = create_app({"TESTING": True, "DATABASE_URL": database_url, "SECRET_KEY": "test-secret",
                      "TIMEZONE": "Europe/Moscow", "B24_CLIENT_ID": "local.6790a1b2c3d4e5.12345678",
                      "B24_CLIENT_SECRET": "client-secret-xyz",
                      "PUBLIC_URL": "https://loyalty.example.com"})
    db.connect(reuse_if_open=True)
    if database_url.startswith("postgresql"):
        _truncate_postgres()
    else:
        migrate()
    yield app
    if not db.is_closed():
        db.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def portal(app):
    return Portal.create(member_id="portal-a", domain="a.bitrix24.ru", status="active")


class ApiActions:
    """Calls the REST API as one portal's key holder (like flaskr's AuthActions)."""

    def __init__(self, client, key: str):
        self.client, self.key, self._n = client, key, 0

    def headers(self, idem: str | None = None, **extra) -> dict:
        headers = {"Authorization": f"Bearer {self.key}", **extra}
        if idem is not None:
            headers["Idempotency-Key"] = idem
        return headers

    def get(self, path, **kw):
        return self.client.get(path, headers=self.headers(), **kw)

    def post(self, path, json=None, idem: str | None = None, **kw):
        return self.client.post(path, json=json, headers=self.headers(idem), **kw)

    def put(self, path, json=None, **kw):
        return self.client.put(path, json=json, headers=self.headers(), **kw)

    def op(self, number, kind, json, idem: str | None = None):
        self._n += 1
        return self.post(f"/api/v1/cards/{number}/{kind}", json=json, idem=idem or f"k{self._n}")

    def new_card(self, phone="+7 916 123-45-67", **fields):
        body = {"phone": phone, "last_name": "Петрова", "first_name": "Анна",
                "client_category": "Врач", **fields}
        response = self.post("/api/v1/cards", json=body)
        assert response.status_code in (200, 201), response.json
        return response.json


@pytest.fixture
def pg_url():
    """The PostgreSQL the tests run on (for a test that makes a schema of its own)."""
    return PG_URL


@pytest.fixture
def api_actions():
    """The class itself, for a test that needs a key of its own portal (`from conftest
    import` would find tests/browser/conftest.py first in a full run)."""
    return ApiActions


@pytest.fixture
def api(client, portal):
    from api.auth import create_key

    return ApiActions(client, create_key(portal, "tests"))


@pytest.fixture(autouse=True)
def fresh_rate_limiter(monkeypatch):
    """Each test gets its own bucket, and the limiter never really sleeps."""
    from background import ratelimit

    monkeypatch.setattr(ratelimit, "DEFAULT_LIMITER", ratelimit.RateLimiter(sleep=lambda s: None))


@pytest.fixture
def b24(app):
    """A fake Bitrix24 portal and OAuth server (tests/b24fake.py)."""
    import responses

    from b24fake import FakePortal

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakePortal(rsps)


@pytest.fixture
def installed(app):
    """A portal as the install left it: tokens and the application token stored."""
    from b24fake import APP_TOKEN, ENDPOINT, MEMBER

    return Portal.create(member_id=MEMBER, domain="example.bitrix24.com", client_endpoint=ENDPOINT,
                         access_token="access-1", refresh_token="refresh-1",
                         application_token=APP_TOKEN, status="active", installed_by_user_id=1)
