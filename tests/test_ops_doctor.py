"""`flask --app api doctor` says what a production service is missing, and the
scheduler's heartbeat tells it whether a scheduler is acting."""
from __future__ import annotations

from datetime import timedelta

import pytest

from api import create_app
from api.clock import utcnow
from api.db import db, is_postgres
from scheduler import heartbeat

GOOD = {"TESTING": True, "SECRET_KEY": "k" * 64, "PUBLIC_URL": "https://loyalty.example.com",
        "B24_CLIENT_ID": "local.6790a1b2c3d4e5.12345678", "B24_CLIENT_SECRET": "client-secret-xyz",
        "PROXY_HOPS": 1}


def doctor(app):
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def line(output: str, name: str) -> str:
    return next(x.strip() for x in output.splitlines() if f"  {name} " in x)


@pytest.fixture
def ready(app):
    configured = create_app({**GOOD, "DATABASE_URL": app.config["DATABASE_URL"]})
    heartbeat.beat("host-a:1", "tick")
    return configured


def test_a_ready_service_passes(ready):
    code, output = doctor(ready)
    assert code == 0, output
    assert line(output, "public URL") == "ok    public URL    https://loyalty.example.com"
    assert line(output, "scheduler").startswith("ok    scheduler     last acted 0 s ago "
                                                "(host-a:1, tick)")
    database = line(output, "database")
    if is_postgres():
        assert database.startswith("ok") and "reachable, migrated" in database
        assert output.strip().endswith("Ready: 6 checks, 0 warning(s).")
    else:
        assert database.startswith("warn") and "SQLite" in database
        assert output.strip().endswith("Ready: 6 checks, 1 warning(s).")


def test_a_bare_install_is_told_everything_it_lacks(tmp_path):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}",
                      "SECRET_KEY_FILE": str(tmp_path / "secret_key")})
    code, output = doctor(app)
    assert code == 1
    assert "LOYALTY_PUBLIC_URL is not set" in line(output, "public URL")
    assert "LOYALTY_SECRET_KEY is not set" in line(output, "secret key")
    assert "B24_CLIENT_ID and B24_CLIENT_SECRET not set" in line(output, "Bitrix24 app")
    assert "LOYALTY_PROXY_HOPS is 0" in line(output, "proxy")
    assert "not migrated (no tables yet)" in line(output, "database")
    assert "db upgrade" in line(output, "database")
    assert line(output, "scheduler") == "FAIL  scheduler     unknown until the database is migrated"
    assert output.strip().endswith("5 problem(s): public URL, secret key, Bitrix24 app, "
                                   "database, scheduler. Not ready.")


@pytest.mark.parametrize("url", ["http://loyalty.example.com", "loyalty.example.com"])
def test_a_public_url_must_be_https(app, url):
    configured = create_app({**GOOD, "DATABASE_URL": app.config["DATABASE_URL"],
                             "PUBLIC_URL": url})
    code, output = doctor(configured)
    assert code == 1 and line(output, "public URL").startswith("FAIL")
    assert "only https" in line(output, "public URL")


def test_a_short_secret_key_fails(app):
    configured = create_app({**GOOD, "DATABASE_URL": app.config["DATABASE_URL"],
                             "SECRET_KEY": "secret"})
    assert "shorter than 32" in line(doctor(configured)[1], "secret key")


def test_a_stale_heartbeat_means_no_scheduler(ready):
    heartbeat.beat("host-a:1", "tick", now=utcnow() - timedelta(minutes=10))
    code, output = doctor(ready)
    assert code == 1
    assert "last acted 600 s ago (host-a:1, tick): not running" in line(output, "scheduler")


def test_no_heartbeat_says_start_the_scheduler(app):
    configured = create_app({**GOOD, "DATABASE_URL": app.config["DATABASE_URL"]})
    code, output = doctor(configured)
    assert code == 1 and "flask --app api scheduler run" in line(output, "scheduler")


def test_database_down_is_a_failed_check_not_a_traceback():
    app = create_app({**GOOD, "DATABASE_URL": "postgresql://loyalty:pw-x@127.0.0.1:9/loyalty"})
    code, output = doctor(app)
    assert code == 1 and "pw-x" not in output
    assert line(output, "database").startswith(
        "FAIL  database      postgresql://***@127.0.0.1:9/loyalty is not reachable: ")


def test_the_scheduler_stamps_the_heartbeat_when_it_acts(app):
    worker = app.extensions["worker"]
    assert heartbeat.last() is None
    try:
        worker._guarded(worker.tick)()
    finally:
        worker.lease.release()
    db.connect(reuse_if_open=True)
    row = heartbeat.last()
    assert (row.job, row.holder) == ("tick", worker.lease.holder)
    assert heartbeat.age() < timedelta(seconds=5)
