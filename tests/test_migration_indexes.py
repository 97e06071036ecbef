"""Migration 0016: the single-column indexes that a composite index already leads are gone,
from a new database and from one migrated before them; the composites stay (issue 17)."""
from __future__ import annotations

from api.db import db
from api.migrations import REDUNDANT_INDEXES, migrate
from api.models import SchemaVersion

# The index each dropped one was redundant with: same leading column.
COVERED_BY = {
    "card_portal_id": ("card", ["portal_id", "number"]),
    "operation_portal_id": ("operation", ["portal_id", "scope", "key"]),
    "entry_portal_id": ("entry", ["portal_id", "idempotency_key"]),
    "entry_card_id": ("entry", ["card_id", "id"]),
    "lot_card_id": ("lot", ["card_id", "expires_at"]),
    "notification_portal_id": ("notification", ["portal_id", "key"]),
    "notification_card_id": ("notification", ["card_id", "id"]),
    "auditentry_portal_id": ("auditentry", ["portal_id", "id"]),
    "webhookevent_portal_id": ("webhookevent", ["portal_id", "key"]),
    "hold_card_id": ("hold", ["card_id", "status", "expires_at"]),
}


def indexes(table: str) -> dict[str, list[str]]:
    return {index.name: index.columns for index in db.get_indexes(table)}


def test_every_dropped_index_is_covered_and_gone(app):
    assert set(COVERED_BY) == set(REDUNDANT_INDEXES)
    for name, (table, columns) in COVERED_BY.items():
        present = indexes(table)
        assert name not in present, f"{name} is still on {table}"
        assert columns in present.values(), f"{table} lost its index on {columns}"


def test_a_database_migrated_before_them_loses_them(app):
    for name, (table, columns) in COVERED_BY.items():
        db.execute_sql(f'CREATE INDEX "{name}" ON "{table}" ("{columns[0]}")')
    assert "entry_portal_id" in indexes("entry")
    SchemaVersion.delete().where(SchemaVersion.name == "0016_indexes").execute()
    assert migrate() == ["0016_indexes"]
    for name, (table, _) in COVERED_BY.items():
        assert name not in indexes(table)
    assert migrate() == []
