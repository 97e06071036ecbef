"""api.literals writes our prepared statements' values exactly as psycopg2 does, and gives
back to psycopg2 whatever it cannot write the same way (issue 17)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from api import literals

HOSTILE = [
    None, 0, 7, -5, -(10 ** 30), 10 ** 30, True, False,
    Decimal("3.00"), Decimal("-0.5"), Decimal("1E+2"), Decimal("-1E-7"), Decimal("0"),
    datetime(2026, 12, 1, 17, 7, 54, 707084), datetime(2026, 12, 1, 17, 7, 54),
    datetime(1, 1, 1), date(2026, 1, 2),
    "", "a'b", "''", "'; DROP TABLE card; --", "back\\slash", "\\'", "E'x'", "50% off",
    "%s %(x)s %%", "юникод «ёлки»", "emoji 🎉", "line\nbreak\r\ttab", "$$ dollar $$",
    "/* comment", "-- comment", "a" * 5000,
]


@pytest.fixture
def conn(pg_url):
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        connection = psycopg2.connect(pg_url, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield connection
    connection.close()


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_value_is_written_as_psycopg2_writes_it(conn, value):
    statement = "EXECUTE loyalty_probe (%s, %s)"
    ours = literals.render(statement, (value, 1), conn)
    assert ours == conn.cursor().mogrify(statement, (value, 1))


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_postgresql_reads_back_the_very_value(conn, value):
    cur = conn.cursor()
    kind = {bool: "boolean", int: "numeric", Decimal: "numeric", datetime: "timestamp",
            date: "date", str: "text", type(None): "text"}[type(value)]
    cur.execute(f"PREPARE loyalty_echo ({kind}) AS SELECT $1")
    try:
        cur.execute(literals.render("EXECUTE loyalty_echo (%s)", (value,), conn))
        back = cur.fetchone()[0]
    finally:
        conn.rollback()
    assert back == value and type(back) in (type(value), Decimal)


@pytest.mark.parametrize("value", [datetime(2026, 1, 1, tzinfo=timezone.utc), 1.5,
                                   Decimal("NaN"), b"bytes", timedelta(days=1),
                                   type("Text", (str,), {})("subclass")], ids=repr)
def test_other_values_are_left_to_psycopg2(conn, value):
    assert literals.render("EXECUTE loyalty_probe (%s)", (value,), conn) is None


def test_other_statements_are_left_to_psycopg2(conn):
    assert literals.render('SELECT "id" FROM "card" WHERE "id" = %s', (1,), conn) is None
    assert literals.render("EXECUTE loyalty_probe (%s, %s)", (1,), conn) is None  # miscounted


def test_a_nul_is_refused_as_psycopg2_refuses_it(conn):
    with pytest.raises(ValueError) as theirs:
        conn.cursor().mogrify("%s", ("a\x00b",))
    with pytest.raises(ValueError) as ours:
        literals.render("EXECUTE loyalty_probe (%s)", ("a\x00b",), conn)
    assert str(ours.value) == str(theirs.value)


def test_strings_that_are_not_standard_conforming_go_to_psycopg2(conn):
    cur = conn.cursor()
    cur.execute("SET standard_conforming_strings = off")
    try:
        assert literals.render("EXECUTE loyalty_probe (%s)", ("x",), conn) is None
    finally:
        conn.rollback()
        cur.execute("SET standard_conforming_strings = on")


def test_a_hostile_comment_is_stored_as_sent(api, database_url):
    api.new_card()
    comment = "'); DROP TABLE card; -- 50% \\' $$ юникод"
    response = api.op("79161234567", "accruals", {"amount": "1000", "comment": comment})
    assert response.status_code == 201, response.json
    history = api.get("/api/v1/cards/79161234567/transactions").json["items"]
    assert history[0]["comment"] == comment
    assert api.get("/api/v1/cards/79161234567").status_code == 200  # the table is there
