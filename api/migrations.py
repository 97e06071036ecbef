"""Schema migrations: an ordered list, each applied once and recorded.

A new schema change is a new function appended to MIGRATIONS, written with
playhouse.migrate so that existing data is kept. Never edit one that has shipped.
"""
from __future__ import annotations

from peewee import CharField, IntegerField
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
from playhouse.migrate import migrate as apply

from api.db import db, is_postgres
from api.models import (B24_TABLES, KPI_TABLES, LEDGER_TABLES, NOTIFY_TABLES, PAGES_TABLES,
                        SCHEDULER_TABLES, TABLES, Card, NotificationSettings, Operation,
                        PortalSettings, ProgramRules, SchemaVersion)


def _0001_initial():
    # The tables as they first shipped: later columns come from their own migrations.
    with _without_later_columns():
        db.create_tables(TABLES)


def _0002_bitrix24():
    db.create_tables(B24_TABLES)


def _0003_notifications():
    db.create_tables(NOTIFY_TABLES)


def _migrator():
    return PostgresqlMigrator(db.obj) if is_postgres() else SqliteMigrator(db.obj)


def _0004_scheduler():
    """Birthday lookups by month-day, the contact copy, daily runs, the scheduler lease."""
    migrator = _migrator()
    apply(migrator.add_column("card", "birthday_md", IntegerField(null=True)),
          migrator.add_index("card", ("portal_id", "birthday_md"), False))
    for card in Card.select(Card.id, Card.birthdate).where(Card.birthdate.is_null(False)):
        Card.update(birthday_md=card.birthdate.month * 100 + card.birthdate.day).where(
            Card.id == card.id).execute()
    db.create_tables(SCHEDULER_TABLES)


class _without_later_columns:
    """Hide the columns added by later migrations while creating the first tables."""

    LATER = {Card: ["birthday_md"], Operation: ["scope", "folded"]}

    def __enter__(self):
        self.saved, self.indexes = {}, {}
        for model, names in self.LATER.items():
            self.indexes[model] = model._meta.indexes
            model._meta.indexes = [ix for ix in model._meta.indexes
                                   if not set(names) & set(ix[0])]
            for name in names:
                self.saved[(model, name)] = model._meta.fields[name]
                model._meta.remove_field(name)

    def __exit__(self, *exc):
        for (model, name), field in self.saved.items():
            model._meta.add_field(name, field)
        for model, indexes in self.indexes.items():
            model._meta.indexes = indexes
        return False


def _0005_kpis():
    """Rollups for the program's numbers, and the indexes its other queries need."""
    db.create_tables(KPI_TABLES)
    migrator = _migrator()
    apply(migrator.add_index("card", ("portal_id", "created_at"), False),
          migrator.add_index("card", ("portal_id", "tier"), False))
    # Only live lots matter for "expiring soon": a partial index stays small.
    db.execute_sql('CREATE INDEX IF NOT EXISTS "lot_live_expires_at" ON "lot" ("expires_at", '
                   '"card_id", "remaining_kop") WHERE "remaining_kop" > 0')


def _0006_portal_settings():
    """Per-portal settings of the app's pages (what non-admins may see and do)."""
    db.create_tables(PAGES_TABLES)


def _0012_ledger():
    """Key scopes, rollups folded after commit, the settings version token."""
    migrator = _migrator()
    # Rows already written were rolled up in their own transaction: folded = 1.
    apply(migrator.add_column("operation", "scope", CharField(max_length=16, default="client")),
          migrator.add_column("operation", "folded", IntegerField(default=1)))
    # Gifts were always the ledger's own keys (welcome:<number>, birthday:<card>:<year>).
    Operation.update(scope="system").where(Operation.kind.in_(["welcome", "birthday"])).execute()
    db.execute_sql('DROP INDEX IF EXISTS "operation_portal_id_key"')
    db.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "operation_portal_id_scope_key" '
                   'ON "operation" ("portal_id", "scope", "key")')
    # Only operations still to fold: the index stays as small as the backlog.
    db.execute_sql('CREATE INDEX IF NOT EXISTS "operation_unfolded" ON "operation" '
                   '("portal_id", "id") WHERE "folded" = 0')
    db.create_tables(LEDGER_TABLES)
    from api.versions import bump

    saved = set()
    for model in (ProgramRules, NotificationSettings, PortalSettings):
        saved |= {row[0] for row in model.select(model.portal).tuples()}
    for portal_id in sorted(saved):
        bump(portal_id)


MIGRATIONS = [
    ("0001_initial", _0001_initial),
    ("0002_bitrix24", _0002_bitrix24),
    ("0003_notifications", _0003_notifications),
    ("0004_scheduler", _0004_scheduler),
    ("0005_kpis", _0005_kpis),
    ("0006_portal_settings", _0006_portal_settings),
    ("0012_ledger", _0012_ledger),
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
