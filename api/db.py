"""The database handle: chosen at run time from a URL, shared by every module.

SQLite is the embedded default; PostgreSQL is the production path. Both get the
settings the ledger's guarantees depend on (see `connect`).

Connections live in a pool per process (playhouse.pool): a request borrows one and
gives it back at teardown, so no request pays for a new connection (on PostgreSQL a
forked backend, ~4 ms of CPU each). LOYALTY_DB_POOL_SIZE caps a process's connections
(a gunicorn worker serves one request at a time: the default is plenty); a connection
older than DB_POOL_STALE_S is closed and replaced rather than reused.

peewee's pool pings a PostgreSQL connection (`SELECT 1`) at every check-out: a round
trip per request, a third of a card read's. A connection given back less than
DB_POOL_PING_AFTER_S ago is handed out without it (its local state is checked, a
transaction left open rolled back); one idle longer is pinged as before. A connection
the server dropped within that second fails its request (503, retry) and is discarded.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import click
from flask.cli import AppGroup
from peewee import Database, DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import parse as parse_url
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase, PooledSqliteDatabase
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from api.roundtrips import Pipelined


class Handle(DatabaseProxy):
    """peewee's DatabaseProxy whose forwarded attributes are found on the proxy's class.

    The proxy forwards through __getattr__, which Python 3.11 calls only after the normal
    lookup has failed and built an AttributeError with its message: ~2,000 instructions
    each time, some forty times per ledger operation (peewee's transactions ask the proxy
    for transaction_depth, push_transaction, begin, commit...). A property per attribute
    of the database classes skips that; anything else still goes through __getattr__.

    A transaction is handed the database itself, not the proxy: peewee's asks its database
    for the transaction stack, begin and commit eight times an operation, each a lookup
    through the proxy. It is bound when made, so make it where it is entered (`with`)."""

    def atomic(self, *args, **kwargs):
        return (super() if self.obj is None else self.obj).atomic(*args, **kwargs)

    def transaction(self, *args, **kwargs):
        return (super() if self.obj is None else self.obj).transaction(*args, **kwargs)

    def savepoint(self):
        return (super() if self.obj is None else self.obj).savepoint()


def _forwarded(name: str) -> property:
    def get(self):
        target = self.obj
        if target is None:
            raise AttributeError("Cannot use uninitialized Proxy.")
        return getattr(target, name)
    return property(get)


db = Handle()

# Writers wait for the lock instead of failing at once under contention.
SQLITE_BUSY_TIMEOUT_S = 30
DB_POOL_SIZE = 16  # connections per process, at most (opened as needed)
DB_POOL_STALE_S = 300
DB_POOL_WAIT_S = 10  # a request waits this long for a free connection, then fails
DB_POOL_PING_AFTER_S = 1.0  # a connection idle longer is pinged before it is handed out


SCHEMES = ("sqlite", "postgresql", "postgres")


class UnsupportedDatabase(click.ClickException):
    """A database URL this service cannot run on. A ClickException, so that a command
    whose app factory meets it says so in one line."""


class PostgresPool(Pipelined, PooledPostgresqlDatabase):
    """The pool without the liveness round trip for a connection used moments ago, and
    with BEGIN and unanswered writes sent along with other statements (api.roundtrips)."""

    def __init__(self, *args, **kwargs):
        self._returned_at: dict[int, float] = {}  # id(conn) → when it came back, in the pool
        super().__init__(*args, **kwargs)

    def _can_reuse(self, conn) -> bool:  # at check-in
        reusable = super()._can_reuse(conn)
        if reusable:
            self._returned_at[id(conn)] = time.monotonic()
        return reusable

    def _is_closed(self, conn) -> bool:  # at check-out
        returned = self._returned_at.pop(id(conn), None)
        if (returned is not None and time.monotonic() - returned < DB_POOL_PING_AFTER_S
                and not conn.closed and conn.get_transaction_status() == TRANSACTION_STATUS_IDLE):
            return False
        return super()._is_closed(conn)


for _name in {n for kind in (Database, PostgresPool, PooledSqliteDatabase) for n in dir(kind)}:
    if not _name.startswith("__") and not hasattr(DatabaseProxy, _name):
        setattr(Handle, _name, _forwarded(_name))


def connect(url: str, pool_size: int = DB_POOL_SIZE):
    """Build a database from a URL (sqlite:///path, postgresql://...)."""
    parsed = urlparse(url)
    if parsed.scheme not in SCHEMES:
        from api.logs import safe_url

        raise UnsupportedDatabase(f"LOYALTY_DATABASE_URL {safe_url(url)}: only sqlite:///path "
                                  "and postgresql://user:password@host:5432/db are supported.")
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] or ":memory:"
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # IMMEDIATE: a write transaction takes the write lock when it begins, so two
        # debits can't both read a balance and then both write (no lost update, no
        # SQLITE_BUSY on upgrade). WAL lets readers run beside the one writer.
        return PooledSqliteDatabase(
            path,
            max_connections=pool_size, stale_timeout=DB_POOL_STALE_S, timeout=DB_POOL_WAIT_S,
            lock_type="IMMEDIATE",  # (the pool's `timeout` is its wait: busy_timeout below)
            # A pooled connection serves one thread at a time, but not always the same one.
            check_same_thread=False,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": "normal",
                "busy_timeout": SQLITE_BUSY_TIMEOUT_S * 1000,
            },
        )
    if parsed.scheme in ("postgres", "postgresql"):
        return PostgresPool(max_connections=pool_size, stale_timeout=DB_POOL_STALE_S,
                                        timeout=DB_POOL_WAIT_S, **parse_url(url))
    raise ValueError(f"Unsupported database URL scheme {parsed.scheme!r}: "
                           "use sqlite:///path or postgresql://…")


def use(database) -> None:
    """Point the shared proxy at a database (the app factory, tests, CLI); the pool of
    the one it replaces is closed, so nothing keeps its connections open."""
    previous = db.obj
    if isinstance(previous, PooledDatabase) and previous is not database:
        previous.close_all()
    db.initialize(database)


def release_all() -> None:
    """Close this process's connections, pooled ones too. Call it before a fork: a child
    that inherits a pooled socket would share one PostgreSQL session with its parent."""
    if not db.is_closed():
        db.close()
    if isinstance(db.obj, PooledDatabase):
        db.obj.close_all()


def is_postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


def lock_rows(query):
    """Row-lock a SELECT on PostgreSQL; SQLite already holds the whole-db write lock."""
    return query.for_update() if is_postgres() else query


@contextmanager
def connection():
    """Open a connection for the block unless one is open (CLI commands, jobs)."""
    opened = db.connect(reuse_if_open=True)
    try:
        yield
    finally:
        if opened and not db.is_closed():
            db.close()


def init_app(app) -> None:
    use(connect(app.config["DATABASE_URL"], int(app.config.get("DB_POOL_SIZE", DB_POOL_SIZE))))

    @app.teardown_request
    def _close(exc):
        # The first query of a request borrows a pooled connection; this gives it back
        # (a pooled close keeps the connection open for the next request).
        if not db.is_closed():
            db.close()

    app.cli.add_command(db_cli)


@click.group("db", cls=AppGroup, help="Database schema commands.")
def db_cli():
    pass


@db_cli.command("upgrade", help="Create or migrate the schema, keeping all data.")
def upgrade_command():
    from api.migrations import migrate

    with connection():
        applied = migrate()
    if applied:
        click.echo(f"Database migrated: applied {', '.join(applied)}.")
    else:
        click.echo("Database is up to date; nothing to apply.")
