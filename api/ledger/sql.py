"""The ledger's hot statements, as SQL text written once and run on the driver.

An accrual or a debit is about ten small statements. Building each one with peewee's
query builder cost more than running it, so the statements the operations repeat are
written out here, completed once per database kind and run with `execute_sql` (still
through peewee: its connection, its transaction, its error types, its query log).
Everything else in the ledger keeps using the models.

The text below uses `?` placeholders and two slots, filled per database kind:

    {lock}       ' FOR UPDATE OF "c"' on PostgreSQL: the card row stays locked until COMMIT.
                 SQLite needs none: its writers run BEGIN IMMEDIATE (api.db) and so
                 hold the whole database's write lock already.
    {returning}  ' RETURNING "id"' on PostgreSQL; SQLite reads cursor.lastrowid.

Values are bound the way peewee binds them, so rows written here read back through
the models exactly as rows peewee wrote: on SQLite a datetime goes in as the text
`datetime.isoformat(" ")` ('2026-01-10 12:00:00.123456', sqlite3's own adapter) and
a Decimal as its str(); psycopg2 takes both as they are.
"""
from __future__ import annotations

import logging
import re
import weakref
from datetime import date, datetime
from decimal import Decimal

from peewee import DateField, DateTimeField, Field, IntegerField, PostgresqlDatabase, \
    SqliteDatabase, _StringField, __exception_wrapper__

from api.db import db
from api.models import Card

# What the card's live holds reserve at the instant bound first (api.ledger.holds).
HELD = """(SELECT COALESCE(SUM("h"."amount_kop"), 0) FROM "hold" AS "h"
           WHERE "h"."card_id" = "c"."id" AND "h"."status" = 'active' AND "h"."expires_at" > ?)"""

# Does the card hold a lot whose lifetime is over at the instant bound first?
DUE = """EXISTS (SELECT 1 FROM "lot" AS "l" WHERE "l"."card_id" = "c"."id"
          AND "l"."remaining_kop" > 0 AND "l"."expires_at" <= ?)"""
# A card by portal and number with its portal's settings token, and what %s adds.
CARD = """
    SELECT {card_columns}, "v"."token"%s FROM "card" AS "c"
    LEFT JOIN "settingsversion" AS "v" ON "v"."portal_id" = "c"."portal_id"
    WHERE "c"."portal_id" = ? AND "c"."number" = ?"""

# PostgreSQL only: the card locked, the operation's key claimed and the id of its first
# entry drawn, in one round trip (api.ledger.operations._lock_and_claim). The claim reads
# the locked row, so it runs once the lock is granted, as when it was a statement of its
# own; ON CONFLICT sees committed and in-flight keys whatever the snapshot. Bound: the
# card's columns' (%s), portal, number, then scope, key, kind, request hash, time.
LOCK_CLAIM = """
    WITH "locked" AS (""" + CARD + """{lock}),
    "claimed" AS (
        INSERT INTO "operation" ("portal_id", "scope", "key", "kind", "request_hash",
                                 "card_id", "result", "folded", "created_at")
        SELECT "portal_id", ?::varchar, ?::varchar, ?::varchar, ?::varchar, "id", '', 0,
               ?::timestamp FROM "locked"
        ON CONFLICT ("portal_id", "scope", "key") DO NOTHING RETURNING "id")
    SELECT "locked".*, (SELECT "id" FROM "claimed"), nextval('entry_id_seq') FROM "locked\""""
POSTGRES_ONLY = {
    "lock_claim": LOCK_CLAIM % "",
    "lock_claim_due": LOCK_CLAIM % ", {due}",
    # A debit's holds summed and its oldest lot taken, in one round trip after the lock
    # (api.ledger.operations._debit_oldest_lot): the statement starts once the lock is
    # granted, so its snapshot has every hold committed before, as "card_held"'s had. The
    # lot is taken only if the amount also fits the balance less those holds. Bound: card,
    # time; amount, card, amount, time, amount, balance. Gives (held, the lot's id or NULL).
    "held_take_oldest": """
        WITH "held" AS (
            SELECT COALESCE(SUM("amount_kop"), 0) AS "kop" FROM "hold"
            WHERE "card_id" = ? AND "status" = 'active' AND "expires_at" > ?),
        "taken" AS (
            UPDATE "lot" SET "remaining_kop" = "remaining_kop" - ?
            WHERE "id" = (SELECT "id" FROM "lot" WHERE "card_id" = ? AND "remaining_kop" > 0
                          ORDER BY "expires_at", "id" LIMIT 1)
              AND "remaining_kop" >= ? AND "expires_at" > ?
              AND ?::bigint <= ?::bigint - (SELECT "kop" FROM "held")
            RETURNING "id")
        SELECT (SELECT "kop" FROM "held"), (SELECT "id" FROM "taken")""",
    # An entry whose id the lock drew: nothing waits for this INSERT (sql.later).
    "insert_entry_id": """
        INSERT INTO "entry" ("id", "portal_id", "card_id", "operation_id", "idempotency_key",
                             "kind", "amount_kop", "balance_after_kop", "reference",
                             "purchase_kop", "percent", "reverses_id", "actor", "comment",
                             "created_at")
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
}

STATEMENTS = {
    # -- the card, locked for the whole operation, with the portal's settings token
    #    (api.versions) read in the same statement
    "lock_card": CARD % "" + "{lock}",
    # A debit's lock also sums what the card's live holds reserve (api.ledger.holds).
    # SQLite only: there the write lock is taken at BEGIN, before this statement reads.
    # On PostgreSQL the subquery would read the snapshot taken before the row lock was
    # granted, missing a hold committed while the debit waited (held > balance, seen in
    # tests/test_holds.py): there the sum is "card_held", a statement after the lock.
    "lock_card_held": CARD % ", {held}" + "{lock}",
    "card_held": """
        SELECT COALESCE(SUM("amount_kop"), 0) FROM "hold"
        WHERE "card_id" = ? AND "status" = 'active' AND "expires_at" > ?""",
    # An accrual's says whether any lot is due to expire, so it reads lots only then.
    "lock_card_due": CARD % ", {due}" + "{lock}",
    # The same row unlocked, with its holds: a card read is this one statement (and
    # cached rules).
    "read_card": CARD % ", {held}",
    "credit_card": """
        UPDATE "card" SET "balance_kop" = "balance_kop" + ?, "updated_at" = ?
        WHERE "id" = ?""",
    # An accrual moves the balance, the purchases and the tier in one statement.
    "credit_purchase": """
        UPDATE "card" SET "balance_kop" = "balance_kop" + ?, "purchases_kop" = ?, "tier" = ?,
                          "updated_at" = ?
        WHERE "id" = ?""",
    # A debit moves the balance only if it covers the amount: the rowcount says whether.
    "debit_card": """
        UPDATE "card" SET "balance_kop" = "balance_kop" + ?, "updated_at" = ?
        WHERE "id" = ? AND "balance_kop" >= ?""",
    "set_purchases": """
        UPDATE "card" SET "purchases_kop" = ?, "tier" = ?, "updated_at" = ? WHERE "id" = ?""",
    # -- idempotency (api.ledger.idempotency): claim the key, or find who holds it
    "claim_operation": """
        INSERT INTO "operation" ("portal_id", "scope", "key", "kind", "request_hash", "card_id",
                                 "result", "folded", "created_at")
        VALUES (?, ?, ?, ?, ?, ?, '', 0, ?)
        ON CONFLICT ("portal_id", "scope", "key") DO NOTHING RETURNING "id\"""",
    "find_operation": """
        SELECT "request_hash", "result" FROM "operation"
        WHERE "portal_id" = ? AND "scope" = ? AND "key" = ?""",
    "finish_operation": """
        UPDATE "operation" SET "result" = ? WHERE "id" = ?""",
    "rules_data": """
        SELECT "data" FROM "programrules" WHERE "portal_id" = ?""",
    # -- entries
    "insert_entry": """
        INSERT INTO "entry" ("portal_id", "card_id", "operation_id", "idempotency_key", "kind",
                             "amount_kop", "balance_after_kop", "reference", "purchase_kop",
                             "percent", "reverses_id", "actor", "comment", "created_at")
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){returning}""",
    # The deal's accrual not yet reversed (oldest first), if any.
    "open_accrual": """
        SELECT "id" FROM "entry" AS "e"
        WHERE "e"."card_id" = ? AND "e"."reference" = ? AND "e"."kind" = ?
          AND NOT EXISTS (SELECT 1 FROM "entry" AS "r" WHERE "r"."reverses_id" = "e"."id")
        ORDER BY "e"."id" LIMIT 1""",
    # -- lots, oldest-expiring first
    "insert_lot": """
        INSERT INTO "lot" ("card_id", "entry_id", "amount_kop", "remaining_kop", "expires_at")
        VALUES (?, ?, ?, ?, ?){returning}""",
    "due_lots": """
        SELECT "id", "remaining_kop", "expires_at" FROM "lot"
        WHERE "card_id" = ? AND "remaining_kop" > 0 AND "expires_at" <= ?
        ORDER BY "expires_at", "id"
    """,
    # Every lot with bonuses left: a spend splits them into due (expire first) and spendable.
    "live_lots": """
        SELECT "id", "remaining_kop", "expires_at" FROM "lot"
        WHERE "card_id" = ? AND "remaining_kop" > 0
        ORDER BY "expires_at", "id"
    """,
    # A debit's common case in one statement: the oldest live lot, if it is not due and
    # covers the whole amount, gives it (no row back: read the lots and go the long way).
    "take_oldest_lot": """
        UPDATE "lot" SET "remaining_kop" = "remaining_kop" - ?
        WHERE "id" = (SELECT "id" FROM "lot" WHERE "card_id" = ? AND "remaining_kop" > 0
                      ORDER BY "expires_at", "id" LIMIT 1)
          AND "remaining_kop" >= ? AND "expires_at" > ?
        RETURNING "id\"""",
    "take_from_lot": """
        UPDATE "lot" SET "remaining_kop" = "remaining_kop" - ? WHERE "id" = ?""",
    "insert_allocation": """
        INSERT INTO "allocation" ("entry_id", "lot_id", "amount_kop") VALUES (?, ?, ?)""",
}


def _card_columns() -> str:
    return ", ".join(f'"c"."{f.column_name}"' for f in Card._meta.sorted_fields)


class Dialect:
    """The statements completed for one database kind, and how values are bound there."""

    def __init__(self, postgres: bool):
        self.postgres = postgres
        self._last_timestamp: tuple = (None, None)
        slots = ({"lock": ' FOR UPDATE OF "c"', "returning": ' RETURNING "id"'} if postgres
                 else {"lock": "", "returning": ""})
        slots["card_columns"] = _card_columns()
        slots["held"], slots["due"] = HELD, DUE
        self.text, self.prepare = {}, {}
        for name, template in {**STATEMENTS, **(POSTGRES_ONLY if postgres else {})}.items():
            self.add(name, " ".join(template.format(**slots).split()))

    def add(self, name: str, text: str) -> None:
        """A statement by name; on PostgreSQL a prepared one (see `prepared`)."""
        if not self.postgres:
            self.text[name] = text
            return
        marks = text.count("?")
        numbered = iter(range(1, marks + 1))
        self.prepare[name] = (f"PREPARE loyalty_{name} AS "
                              + re.sub(r"\?", lambda _: f"${next(numbered)}", text))
        self.text[name] = (f"EXECUTE loyalty_{name}"
                           + (f" ({', '.join(['%s'] * marks)})" if marks else ""))

    def timestamp(self, value: datetime | None):
        if value is None or self.postgres:
            return value
        # An operation binds its one `now` several times; formatting it is the costly part.
        last = self._last_timestamp
        if last[0] is value:
            return last[1]
        text = value.isoformat(" ")
        self._last_timestamp = (value, text)  # one assignment: threads see a matching pair
        return text

    def decimal(self, value: Decimal | None):
        if value is None:
            return None
        value = value or Decimal(0)  # as peewee's DecimalField.db_value
        return value if self.postgres else str(value)


_DIALECTS: dict[type, Dialect] = {}
_CURRENT: tuple = (None, None)  # (database, its dialect): asked for a dozen times an operation


def dialect() -> Dialect:
    """The dialect of the database the shared handle points at now (tests switch it)."""
    global _CURRENT
    database = db.obj
    current = _CURRENT
    if current[0] is database:
        return current[1]
    kind = type(database)
    found = _DIALECTS.get(kind)
    if found is None:
        if issubclass(kind, PostgresqlDatabase):
            found = Dialect(postgres=True)
        elif issubclass(kind, SqliteDatabase):
            found = Dialect(postgres=False)
        else:
            raise NotImplementedError(f"The ledger runs on SQLite or PostgreSQL, not {kind}")
        _DIALECTS[kind] = found
    _CURRENT = (database, found)
    return found


def _execute(name: str, params):
    found = dialect()
    if found.postgres:
        prepared(found, name)  # and through execute_sql: api.roundtrips pipelines there
        return db.obj.execute_sql(found.text[name], params)
    return _execute_sqlite(db.obj, found.text[name], params)


_QUERY_LOG = logging.getLogger("peewee")


def _execute_sqlite(database, text: str, params):
    """peewee's execute_sql without its layers of calls, which on SQLite cost about a
    fifth of a small statement: the same query log line, the same error types."""
    if database.query_hooks:
        return database.execute_sql(text, params)
    if _QUERY_LOG.isEnabledFor(logging.DEBUG):
        _QUERY_LOG.debug((text, params))
    state = database._state
    conn = database.connection() if state.closed else state.conn
    with __exception_wrapper__:
        cursor = conn.cursor()
        cursor.execute(text, params)
    return cursor


def later(name: str, *params) -> None:
    """A statement whose result nobody reads: on PostgreSQL it goes out with the
    transaction's next statement or its COMMIT (api.roundtrips); on SQLite it runs now."""
    found = dialect()
    execute_later = getattr(db.obj, "execute_later", None)
    if not found.postgres or execute_later is None:
        _execute(name, params)
        return
    prepared(found, name)
    execute_later(found.text[name], params)


# PostgreSQL connection → the names prepared on it (a connection that closes drops out).
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LAST_PREPARED: tuple = (None, None)  # (connection, its names): the one asked for last


def prepared(found: Dialect, name: str) -> None:
    """Prepare the statement on this connection the first time it runs there: parsing
    and planning each small statement again cost PostgreSQL about a third of its time.
    PREPARE outlives the transaction it runs in (a rollback keeps it) and is re-planned
    by the server when a table it names changes."""
    global _LAST_PREPARED
    conn = db.obj.connection()
    last = _LAST_PREPARED  # one read: another thread's pair is whole, and not this conn's
    if last[0] is conn:
        names = last[1]
    else:  # a weak key is a new weakref per lookup: seven an accrual, one connection
        names = _PREPARED.get(conn)
        if names is None:
            names = _PREPARED[conn] = set()
        _LAST_PREPARED = (conn, names)
    if name not in names:
        with __exception_wrapper__, conn.cursor() as cursor:
            cursor.execute(found.prepare[name])
        names.add(name)


def rows(name: str, *params) -> list[tuple]:
    return _execute(name, params).fetchall()


def row(name: str, *params) -> tuple | None:
    return _execute(name, params).fetchone()


def run(name: str, *params) -> int:
    """An UPDATE; returns how many rows it changed."""
    return _execute(name, params).rowcount


def insert(name: str, *params) -> int | None:
    """An INSERT; returns the new row's id (on PostgreSQL only if it has {returning})."""
    found = dialect()
    cursor = _execute(name, params)
    if found.postgres:
        return cursor.fetchone()[0] if cursor.description else None
    return cursor.lastrowid


def insert_row(row, unique: tuple[str, ...] = (), answer: bool = True) -> int | None:
    """INSERT a model row as it stands (the fields in its __data__: what was given and the
    defaults), returning its new id; the text is written once per table and column set.
    With `unique` (the fields of a unique index) an existing row is left as it is and
    None comes back; with answer=False nothing comes back and the INSERT may go out
    later (`later`). For the follow-up's rows that every movement writes (notices, the
    audit line), where peewee's INSERT builder cost more than the INSERT itself."""
    model, names, found = type(row), tuple(row.__data__), dialect()
    key = (model, names, unique)
    name = _ROW_INSERTS.get(key)
    if name is None:
        name = _ROW_INSERTS[key] = f"insert_{model._meta.table_name}_{len(_ROW_INSERTS)}"
    if name not in found.text:
        found.add(name, _insert_text(model, names, unique))
    plan = _ROW_VALUES.get(key)
    if plan is None:
        plan = _ROW_VALUES[key] = _value_plan(model, names)
    data, values = row.__data__, []
    for n, field, keeps in plan:
        value = data[n]
        plain = keeps is not None and (value is None or type(value) is keeps)
        values.append(value if plain else field.db_value(value))
    if not answer:
        later(name, *values)
        return None
    made = _execute(name, values).fetchone()
    return made[0] if made else None


_ROW_INSERTS: dict[tuple, str] = {}  # (model, fields, unique) → statement name
_ROW_VALUES: dict[tuple, tuple] = {}  # the same key → (name, field, type it keeps) per column


def _value_plan(model, names: tuple[str, ...]) -> tuple:
    """Per column, the type of value its field's db_value hands back as it is: a str for
    peewee's own text fields, an int for its integer fields (None for the others, and for
    any field class that converts in its own way). Such a value, or None, is bound as it
    is, without the two calls per value that find so."""
    fields = model._meta.fields
    plan = []
    for n in names:
        kind = type(fields[n])
        keeps = None
        if kind.db_value is Field.db_value:
            if kind.adapt is _StringField.adapt:
                keeps = str
            elif kind.adapt is IntegerField.adapt:
                keeps = int
        plan.append((n, fields[n], keeps))
    return tuple(plan)


def _insert_text(model, names: tuple[str, ...], unique: tuple[str, ...]) -> str:
    fields = model._meta.fields
    columns = ", ".join(f'"{fields[n].column_name}"' for n in names)
    conflict = (" ON CONFLICT (" + ", ".join(f'"{fields[n].column_name}"' for n in unique)
                + ") DO NOTHING") if unique else ""
    return (f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES '
            f'({", ".join(["?"] * len(names))}){conflict} RETURNING "id"')


def pk(value):
    """A model row's id; an id (or None) as it is. The models' foreign keys take either."""
    return getattr(value, "id", value)


def timestamp(value: datetime | None):
    return dialect().timestamp(value)


def day(value):
    """A date bound as peewee's DateField binds it: ISO text on SQLite, the date on PostgreSQL."""
    return value if dialect().postgres else value.isoformat()


def reader(field):
    """How a raw column of a date or timestamp field reads back, as `field.python_value`
    does: SQLite hands back the text that was bound. The exact forms this module and peewee
    write are parsed with fromisoformat (a fifth of the cost of peewee's strptime loop);
    anything else goes to peewee's own reading."""
    slow = field.python_value
    if isinstance(field, DateTimeField):
        def read(value):
            if type(value) is str and value[10:11] == " " and (
                    len(value) == 19 or (len(value) == 26 and value[19] == ".")):
                return datetime.fromisoformat(value)
            return slow(value)
        return read
    if isinstance(field, DateField):
        def read_day(value):
            if type(value) is str and len(value) == 10:
                return date.fromisoformat(value)
            return slow(value)
        return read_day
    raise TypeError(f"{field!r} is not a date or timestamp field")


def date_of(value):
    """A timestamp read back raw: datetime on PostgreSQL, ISO text on SQLite."""
    return value.date() if hasattr(value, "date") else date.fromisoformat(str(value)[:10])


def decimal(value: Decimal | None):
    return dialect().decimal(value)
