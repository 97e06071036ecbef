"""The databases a bench runs on: a fresh SQLite file, then PostgreSQL in a schema of its
own (dropped afterwards) when it answers."""
from __future__ import annotations

import os
import tempfile
from typing import Iterator

from api.db import connect

DEFAULT_PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL",
                                "postgresql://postgres@127.0.0.1:5432/test")


def add_arguments(parser) -> None:
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-url", default=DEFAULT_PG_URL)


def each(args, schema: str) -> Iterator[tuple[str, object]]:
    """(label, database) for SQLite, then PostgreSQL unless skipped or not answering."""
    with tempfile.TemporaryDirectory() as tmp:
        yield "SQLite", connect(f"sqlite:///{tmp}/bench.sqlite3")
    if args.sqlite_only:
        return
    try:
        _admin(args.postgres_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    except Exception as exc:  # noqa: BLE001 - say why and stop, as the other benches do
        print(f"PostgreSQL skipped: {str(exc).strip()[:120]}")
        return
    joiner = "&" if "?" in args.postgres_url else "?"
    try:
        yield "PostgreSQL", connect(f"{args.postgres_url}{joiner}"
                                    f"options=-c%20search_path%3D{schema}")
    finally:
        _admin(args.postgres_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _admin(url: str, statement: str) -> None:
    admin = connect(url)
    admin.connect()
    try:
        admin.execute_sql(statement)
    finally:
        admin.close()
