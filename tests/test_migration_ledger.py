"""0012_ledger on a database written before it: keys keep replaying, gifts move to the
system scope, rows already rolled up are not folded again, saved settings get a token."""
from __future__ import annotations

import json
import os

import pytest

from api.db import connect, db, use
from api.ledger import operations, rollups, rules
from api.migrations import MIGRATIONS
from api.models import (DailyStat, Operation, Portal, ProgramRules, SchemaVersion,
                        SettingsVersion)

MIG_SCHEMA = f"loyalty_mig_{os.getpid()}"


@pytest.fixture
def before_0012(database_url, pg_url):
    if database_url.startswith("postgresql"):
        PG_URL = pg_url  # noqa: N806 - the name conftest gives it
        admin = connect(PG_URL)
        with admin.connection_context():
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {MIG_SCHEMA} CASCADE")
            admin.execute_sql(f"CREATE SCHEMA {MIG_SCHEMA}")
        joiner = "&" if "?" in PG_URL else "?"
        database_url = f"{PG_URL}{joiner}options=-c%20search_path%3D{MIG_SCHEMA}"
    database = connect(database_url)
    use(database)
    database.connect()
    db.create_tables([SchemaVersion])
    for name, step in MIGRATIONS:
        if name != "0012_ledger":
            with db.atomic():
                step()
                SchemaVersion.create(name=name)
    # The unique key index as it shipped before scopes.
    db.execute_sql('CREATE UNIQUE INDEX "operation_portal_id_key" ON "operation" '
                   '("portal_id", "key")')
    yield
    database.close()
    if database_url.startswith("postgresql"):
        with admin.connection_context():
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {MIG_SCHEMA} CASCADE")


def _old_rows():
    db.execute_sql("""INSERT INTO "portal" ("member_id", "status", "timezone", "created_at",
                      "updated_at") VALUES ('m', 'api', 'Europe/Moscow',
                      '2026-01-01 00:00:00', '2026-01-01 00:00:00')""")
    db.execute_sql("""INSERT INTO "card" ("portal_id", "number", "status", "tier", "balance_kop",
                      "purchases_kop", "search_text", "created_at", "updated_at")
                      VALUES (1, '79161234567', 'active', 'Базовый', 0, 0, '',
                      '2026-01-01 00:00:00', '2026-01-01 00:00:00')""")
    for key, kind in (("welcome:79161234567", "welcome"), ("K", "debit")):
        db.execute_sql("""INSERT INTO "operation" ("portal_id", "key", "kind", "request_hash",
                          "card_id", "result", "created_at") VALUES (1, ?, ?, 'h', 1,
                          '{"kind": "x"}', '2026-01-01 00:00:00')""".replace(
            "?", "%s" if db.obj.param == "%s" else "?"), (key, kind))
    ProgramRules.insert(portal=1, data=json.dumps(rules.DEFAULTS)).execute()


def test_0012_keeps_every_key_and_folds_nothing_twice(before_0012):
    from api.migrations import migrate

    _old_rows()
    assert migrate() == ["0012_ledger"]
    scopes = dict(Operation.select(Operation.key, Operation.scope).tuples())
    assert scopes == {"welcome:79161234567": "system", "K": "client"}
    assert set(Operation.select(Operation.folded).tuples()) == {(1,)}  # rolled up back then
    assert SettingsVersion.select().where(SettingsVersion.portal == 1).count() == 1
    portal = Portal.get_by_id(1)
    assert rollups.catch_up(portal) == 0 and DailyStat.select().count() == 0
    # The old client key still answers as before; the same text as a client key of a new
    # kind is the client's own, not the welcome gift's.
    with pytest.raises(Exception) as refused:
        operations.debit(portal, "79161234567", 100, key="K", actor="t")
    assert type(refused.value).__name__ == "IdempotencyConflict"
    operations.adjust(portal, "79161234567", 100, key="welcome:79161234567", actor="t",
                      reason="проверка")
    assert Operation.select().count() == 3
