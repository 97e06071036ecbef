"""Statements per request on the hot paths (issue 17), on both databases: an accrual over
HTTP in at most 8, 7 on PostgreSQL (BEGIN and COMMIT aside), a debit in 9, 8 on
PostgreSQL, a card read in 1 (its holds summed in the same SELECT). The API key, the
program rules and the notification settings come from the per-process caches once warm.
"""
from __future__ import annotations

import pytest
from playhouse.test_utils import count_queries

NUMBER = "79161234567"


@pytest.fixture
def warm(api):
    api.new_card()
    assert api.op(NUMBER, "accruals", {"amount": "1000"}).status_code == 201
    assert api.op(NUMBER, "debits", {"amount": "1"}).status_code == 201
    assert api.get(f"/api/v1/cards/{NUMBER}").status_code == 200
    return api


def statements(call) -> tuple[int, list[str]]:
    """How many statements peewee ran for the call, and which (BEGIN and COMMIT are not
    among them: peewee sends those on the bare cursor)."""
    with count_queries() as counter:
        response = call()
    assert response.status_code in (200, 201), response.get_json()
    return counter.count, [q.msg[0].split(" (")[0][:60] for q in counter.get_queries()]


def test_an_accrual_is_at_most_eight_statements_seven_on_postgresql(warm, database_url):
    # PostgreSQL locks the card and claims the key in one statement (sql "lock_claim").
    most = 7 if database_url.startswith("postgresql") else 8
    count, sql = statements(lambda: warm.op(NUMBER, "accruals", {"amount": "1000"}))
    assert count <= most, "\n".join(sql)
    print(f"\n{count} statements:", *sql, sep="\n  ")


def test_a_debit_is_at_most_nine_statements_eight_on_postgresql(warm, database_url):
    # PostgreSQL sums the card's holds after the lock (inside the locking SELECT the sum
    # would read the snapshot from before the lock, tests/test_holds.py), in the statement
    # that takes the oldest lot, and claims the key with the lock.
    count, sql = statements(lambda: warm.op(NUMBER, "debits", {"amount": "10"}))
    most = 8 if database_url.startswith("postgresql") else 9
    assert count <= most, "\n".join(sql)
    print(f"\n{count} statements:", *sql, sep="\n  ")


def test_a_card_read_is_one_statement(warm):
    count, sql = statements(lambda: warm.get(f"/api/v1/cards/{NUMBER}"))
    assert count == 1, "\n".join(sql)
    print(f"\n{count} statements:", *sql, sep="\n  ")


def test_healthz_is_one_round_trip(client, app):
    with count_queries() as counter:
        assert client.get("/api/v1/healthz").status_code == 200
    assert counter.count == 1


def test_a_saved_change_reaches_the_next_operation_despite_the_caches(warm):
    from api.models import Notification

    def sms() -> int:
        return Notification.select().where(Notification.template == "accrual_sms").count()

    before = sms()
    changed = warm.put("/api/v1/settings/notifications", json={"notices": {"accrual_sms": False}})
    assert changed.status_code == 200, changed.get_json()
    assert warm.put("/api/v1/rules", json={"tiers": [
        {"name": "Один", "threshold": "0.00", "percent": "10.00"}]}).status_code == 200
    accrued = warm.op(NUMBER, "accruals", {"amount": "1000"})
    assert accrued.get_json()["amount"] == "100.00"  # 10 %, not the cached 3 %
    assert sms() == before  # the cached settings would still have sent it


@pytest.fixture
def pings(app, database_url, monkeypatch):
    """How many times the pool pinged a PostgreSQL connection before handing it out."""
    from playhouse.pool import PooledPostgresqlDatabase

    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's pool checks its connection locally")
    counted = []
    ping = PooledPostgresqlDatabase._is_closed

    def counting(self, conn):
        counted.append(conn)
        return ping(self, conn)

    monkeypatch.setattr(PooledPostgresqlDatabase, "_is_closed", counting)
    return counted


def test_a_connection_given_back_moments_ago_is_reused_without_a_ping(client, pings):
    for _ in range(3):
        assert client.get("/api/v1/healthz").status_code == 200
    assert pings == []


def test_an_idle_connection_is_pinged_and_a_dropped_one_replaced(client, pings, pg_url,
                                                                   monkeypatch):
    import psycopg2

    from api import db as db_mod

    assert client.get("/api/v1/healthz").status_code == 200
    pid = db_mod.db.obj._connections[0][2].get_backend_pid()
    monkeypatch.setattr(db_mod, "DB_POOL_PING_AFTER_S", 0.0)  # every connection is "idle"
    admin = psycopg2.connect(pg_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    assert client.get("/api/v1/healthz").status_code == 200  # the ping found it dead
    assert len(pings) == 1


def test_postgresql_runs_the_hot_statements_prepared(warm, database_url):
    from api.db import db

    if not database_url.startswith("postgresql"):
        pytest.skip("sqlite3 keeps its own statement cache")
    count, sql = statements(lambda: warm.op(NUMBER, "accruals", {"amount": "1000"}))
    assert all(s.startswith("EXECUTE loyalty_") for s in sql), "\n".join(sql)
    names = {n for (n,) in db.execute_sql("SELECT name FROM pg_prepared_statements")}
    assert {"loyalty_lock_claim_due", "loyalty_insert_entry_id"} <= names
    short = warm.op(NUMBER, "debits", {"amount": "1000000"})  # rolled back: PREPARE stays
    assert short.status_code == 422
    assert warm.op(NUMBER, "debits", {"amount": "1"}).status_code == 201


# An accrual: BEGIN with the lock, the claim and the entry's id drawn; then the card's
# credit, its entry, the lot, the stored answer, the notice and the audit line with
# COMMIT. A debit also waits for its lot, taken in one statement with the sum of its holds
# (after the lock); the UPDATE of its balance goes out unanswered (its card is locked; the
# CHECK of migration 0018 backs it).
def round_trips(call) -> list[bytes]:
    """What went to PostgreSQL during the call, one item a message (a round trip)."""
    import psycopg2.extensions

    from api.db import db

    sent = []

    class Counting(psycopg2.extensions.cursor):
        def execute(self, query, params=None):
            sent.append(self.mogrify(query, params) if params else query)
            return super().execute(query, params)

    conn = db.obj.connection()
    conn.cursor_factory = Counting
    try:
        assert call().status_code in (200, 201)
    finally:
        conn.cursor_factory = None
    return sent


@pytest.mark.parametrize("kind, body, most", [("accruals", {"amount": "1000"}, 2),
                                              ("debits", {"amount": "10"}, 3)])
def test_postgresql_gets_begin_and_the_unanswered_writes_with_other_statements(
        warm, database_url, kind, body, most):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs in process: no round trips")
    sent = round_trips(lambda: warm.op(NUMBER, kind, body))
    shown = "\n".join(str(s)[:120] for s in sent)
    assert len(sent) <= most, shown
    first, last = (s if isinstance(s, bytes) else s.encode() for s in (sent[0], sent[-1]))
    assert first.startswith(b"BEGIN; EXECUTE loyalty_lock_claim"), shown
    assert b"insert_auditentry" in last and last.endswith(b"; COMMIT"), shown
