"""Schema migrations: an ordered list, each applied once and recorded.

A new schema change is a new function appended to MIGRATIONS, written with
playhouse.migrate so that existing data is kept. Never edit one that has shipped.
"""
from __future__ import annotations

from api.db import db
from api.models import B24_TABLES, NOTIFY_TABLES, TABLES, SchemaVersion


def _0001_initial():
    db.create_tables(TABLES)


def _0002_bitrix24():
    db.create_tables(B24_TABLES)


def _0003_notifications():
    db.create_tables(NOTIFY_TABLES)


MIGRATIONS = [
    ("0001_initial", _0001_initial),
    ("0002_bitrix24", _0002_bitrix24),
    ("0003_notifications", _0003_notifications),
]


def migrate() -> list[str]:
    """Apply what is missing, each migration in its own transaction; return the names."""
    db.create_tables([SchemaVersion])
    done = {row.name for row in SchemaVersion.select(SchemaVersion.name)}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with db.atomic():
            step()
            SchemaVersion.create(name=name)
        applied.append(name)
    return applied
