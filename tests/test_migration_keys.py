"""Migration 0017: a movement no longer locks its portal's row (issue 17).

Every movement wrote four rows with a foreign key to the portal (operation, entry, notice,
audit line); PostgreSQL checks one by locking the referenced row FOR KEY SHARE until COMMIT,
so every movement of a portal locked the same row. The entry and the operation now name
their portal through their card, by one composite key to card (id, portal_id), which is
stricter (an entry's portal must be its card's); the notice and the audit line keep their
card's or no key to the portal. The full index on lot.expires_at went too: every query by
expiry asks for live lots, which the partial index serves."""
from __future__ import annotations

import psycopg2
import pytest
from peewee import IntegrityError

from api.db import db, is_postgres
from api.ledger import cards, operations
from api.migrations import migrate
from api.models import Card, Entry, Operation, Portal, SchemaVersion

PORTAL_KEYS = ("operation", "entry", "notification", "auditentry")


@pytest.fixture
def card(portal):
    found, _ = cards.create_card(portal, {"phone": "9161234567", "last_name": "П",
                                          "first_name": "А", "client_category": "В"}, actor="t")
    return found


def pg_foreign_keys(table: str) -> set[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    rows = db.execute_sql("""
        SELECT c.conname, r.relname,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
        FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid
        WHERE c.contype = 'f' AND c.conrelid = %s::regclass""", (table,)).fetchall()
    return {(tuple(cols), target, tuple(refs)) for _, target, cols, refs in rows}


def portal_row_is_free(portal_id: int) -> bool:
    """Can another session lock the portal's row FOR UPDATE right now?"""
    other = psycopg2.connect(database=db.obj.database, **_connect_params())
    try:
        with other.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
            try:
                cursor.execute('SELECT 1 FROM "portal" WHERE "id" = %s FOR UPDATE', (portal_id,))
                return True
            except psycopg2.errors.LockNotAvailable:
                return False
    finally:
        other.rollback()
        other.close()


def _connect_params() -> dict:
    return {k: v for k, v in db.obj.connect_params.items()
            if k in ("host", "port", "user", "password", "options")}


def test_a_movement_leaves_its_portal_row_unlocked(portal, card):
    if not is_postgres():
        pytest.skip("row locks are PostgreSQL's")
    with db.atomic():
        operations.accrue(portal, card.number, 100_000, key="k-1", actor="t")
        db.execute_sql("SELECT 1")  # the deferred INSERTs go out with it (api.roundtrips)
        assert Entry.select().where(Entry.card == card).count() == 1
        assert portal_row_is_free(portal.id)


def test_entry_and_operation_name_their_portal_through_their_card(portal, card):
    if not is_postgres():
        pytest.skip("SQLite keeps the keys the models declare")
    for table in ("entry", "operation"):
        keys = pg_foreign_keys(table)
        assert (("card_id", "portal_id"), "card", ("id", "portal_id")) in keys, keys
        assert not [k for k in keys if k[1] in ("portal",)], keys
    for table in ("notification", "auditentry"):
        assert not [k for k in pg_foreign_keys(table) if k[1] == "portal"]
    other = Portal.create(member_id="portal-b", domain="b.bitrix24.ru", status="active")
    operations.accrue(portal, card.number, 100_000, key="k-1", actor="t")
    entry = Entry.get(Entry.card == card)
    with pytest.raises(IntegrityError), db.atomic():  # stricter than before: not B's
        Entry.update(portal=other.id).where(Entry.id == entry.id).execute()
    with pytest.raises(IntegrityError), db.atomic():
        Operation.update(portal=other.id).where(Operation.card == card).execute()


def test_deleting_a_card_still_takes_its_entries_and_operations(portal, card):
    operations.accrue(portal, card.number, 100_000, key="k-1", actor="t")
    Card.delete().where(Card.id == card.id).execute()
    assert Entry.select().count() == 0 and Operation.select().where(
        Operation.card == card.id).count() == 0


def test_the_full_expiry_index_is_gone_the_live_one_stays(app):
    names = {index.name for index in db.get_indexes("lot")}
    assert "lot_expires_at" not in names
    assert "lot_live_expires_at" in names


def test_a_database_migrated_before_it_gets_the_new_keys(portal, card):
    if is_postgres():
        for table in ("entry", "operation"):
            db.execute_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{table}_card_portal_fkey"')
            db.execute_sql(f'ALTER TABLE "{table}" ADD FOREIGN KEY ("card_id") REFERENCES '
                           f'"card" ("id") ON DELETE CASCADE')
        for table in PORTAL_KEYS:
            db.execute_sql(f'ALTER TABLE "{table}" ADD FOREIGN KEY ("portal_id") REFERENCES '
                           f'"portal" ("id") ON DELETE CASCADE')
    db.execute_sql('CREATE INDEX "lot_expires_at" ON "lot" ("expires_at")')
    SchemaVersion.delete().where(SchemaVersion.name == "0017_keys").execute()
    assert migrate() == ["0017_keys"]
    assert "lot_expires_at" not in {index.name for index in db.get_indexes("lot")}
    if is_postgres():
        for table in PORTAL_KEYS:
            assert not [k for k in pg_foreign_keys(table) if k[1] == "portal"], table
        assert (("card_id",), "card", ("id",)) not in pg_foreign_keys("entry")
        assert portal_row_is_free(portal.id)
    assert migrate() == []
