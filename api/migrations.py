"""Schema migrations: an ordered list, each applied once and recorded.

A new schema change is a new function appended to MIGRATIONS, written with
playhouse.migrate so that existing data is kept. Never edit one that has shipped.
"""
from __future__ import annotations

from peewee import CharField, IntegerField
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
from playhouse.migrate import migrate as apply

from api.db import db, is_postgres
from api.models import (B24_TABLES, DATA_TABLES, FOLLOW_TABLES, KPI_TABLES, LEDGER_TABLES,
                        NOTIFY_TABLES, OPS_TABLES, PAGES_TABLES, PORTAL_TABLES, SCHEDULER_TABLES,
                        TABLES, WORK_TABLES, ApiKey, B24Event, Card, NotificationSettings,
                        Operation, Outbox, Portal, PortalSettings, ProgramRules, SchemaVersion)


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

    LATER = {Card: ["birthday_md"], Portal: ["server_endpoint"], ApiKey: ["scopes"],
             Operation: ["scope", "folded"]}

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


def _0007_trust():
    """The OAuth server of each portal, so a refresh goes to the host that issued its tokens."""
    apply(_migrator().add_column("portal", "server_endpoint", CharField(max_length=255, null=True)))
def _0008_portal():
    """The nightly sync's resume cursor; queued contact writes use the field name the portal
    accepts (UF_CRM_LOYALTY_BALANCE is over its 20 characters and was never created);
    ONCRMDEALUPDATE is no longer bound, and its stored events were never read."""
    db.create_tables(PORTAL_TABLES)
    for old, new in {"UF_CRM_LOYALTY_BALANCE": "UF_CRM_LOYALTY_BAL"}.items():
        rows = Outbox.select(Outbox.id, Outbox.calls).where(
            (Outbox.status != "sent") & Outbox.calls.contains(old))
        for row in rows:
            Outbox.update(calls=row.calls.replace(f'"{old}"', f'"{new}"')).where(
                Outbox.id == row.id).execute()
    B24Event.delete().where(B24Event.event == "ONCRMDEALUPDATE").execute()
def _0009_work():
    """Throttle counts on the queues (apart from failures) and the per-portal work lanes."""
    migrator = _migrator()
    # A new database got the column from 0002/0003 (the models carry it); add it where missing.
    missing = [table for table in ("activityrun", "outbox", "notification")
               if "throttles" not in {c.name for c in db.get_columns(table)}]
    apply(*(migrator.add_column(table, "throttles", IntegerField(default=0)) for table in missing))
    db.create_tables(WORK_TABLES)
def _0013_data():
    """Card marks (merged, contact deleted, anonymised), the offline-event reservation,
    the audit trail; and the contact copy looked up by phone (import, merges)."""
    db.create_tables(DATA_TABLES)
    apply(_migrator().add_index("contact", ("portal_id", "phone"), False))
def _0014_follow():
    """The client's own login (sites, codes, throttles) and outgoing webhooks: new tables only."""
    db.create_tables(FOLLOW_TABLES)


def _0011_api():
    """API keys get scopes; a key made before them keeps what it could do: everything."""
    apply(_migrator().add_column("apikey", "scopes",
                                 CharField(max_length=100, default="read write admin")))


def _0010_ops():
    """The scheduler's heartbeat, so `flask --app api doctor` can tell it is alive."""
    db.create_tables(OPS_TABLES)
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


def _0015_workers():
    """Claims name their worker (background.leases renews them while it lives)."""
    # A new database got the column from 0002/0003 (the models carry it); add it where missing.
    missing = [table for table in ("activityrun", "outbox", "notification")
               if "claimed_by" not in {c.name for c in db.get_columns(table)}]
    apply(*(_migrator().add_column(table, "claimed_by", CharField(max_length=100, null=True))
            for table in missing))


# Each led by its foreign key's column, which a composite index already leads: the same
# lookups, and every accrual kept seven more index entries up to date (issue 17).
REDUNDANT_INDEXES = ("card_portal_id", "operation_portal_id", "entry_portal_id",
                     "entry_card_id", "lot_card_id", "notification_portal_id",
                     "notification_card_id", "auditentry_portal_id",
                     "webhookevent_portal_id", "hold_card_id")


def _0016_indexes():
    """Drop single-column indexes a composite index covers (the models no longer ask)."""
    for name in REDUNDANT_INDEXES:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')


# The rows a movement writes (issue 17). Each had a foreign key to its portal, and PostgreSQL
# checks one by locking the portal's row FOR KEY SHARE until COMMIT: every movement of a
# portal locked that one row (concurrent share locks become multixacts), four checks of ten.
# The entry and the operation name their portal through their card instead: one key to
# card (id, portal_id) for two, on a row the movement holds locked anyway, and stricter
# (an entry's portal is its card's). A notice keeps its key to the card, the audit line none:
# the portal's rows are never deleted by the app (an uninstall keeps the ledger).
THROUGH_CARD = ("entry", "operation")
PORTAL_KEYS_DROPPED = ("entry", "operation", "notification", "auditentry")


def _0017_keys():
    """Movements no longer lock their portal's row; the full lot expiry index goes (every
    query by expiry asks for live lots: the partial index of 0005 serves them)."""
    db.execute_sql('DROP INDEX IF EXISTS "lot_expires_at"')
    if not is_postgres():
        return  # no row locks; SQLite keeps the keys the models declare
    db.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "card_id_portal_id" '
                   'ON "card" ("id", "portal_id")')
    for table in PORTAL_KEYS_DROPPED:
        columns = [("portal_id",)] + ([("card_id",)] if table in THROUGH_CARD else [])
        for name in _foreign_keys(table, columns):
            db.execute_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for table in THROUGH_CARD:
        db.execute_sql(f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_card_portal_fkey" '
                       'FOREIGN KEY ("card_id", "portal_id") REFERENCES "card" ("id", "portal_id") '
                       'ON DELETE CASCADE')


def _foreign_keys(table: str, columns: list[tuple[str, ...]]) -> list[str]:
    """The names of the table's foreign keys on exactly these columns (named by whoever
    made them: PostgreSQL, peewee's migrator)."""
    found = db.execute_sql("""
        SELECT c.conname, ARRAY(SELECT a.attname FROM unnest(c.conkey) AS k(n)
                                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n)
        FROM pg_constraint c WHERE c.contype = 'f' AND c.conrelid = %s::regclass""",
                           (table,)).fetchall()
    wanted = {tuple(sorted(c)) for c in columns}
    return [name for name, cols in found if tuple(sorted(cols)) in wanted]


def _0018_balance_check():
    """A card's balance can't go below zero, whoever writes it (PostgreSQL: a debit whose
    card it holds locked sends its UPDATE without waiting for the answer, this refuses
    the COMMIT if the balance it read was wrong). NOT VALID: enforced from now on for
    every write, without a scan that could refuse the migration over an old row."""
    if is_postgres():
        db.execute_sql('ALTER TABLE "card" ADD CONSTRAINT "card_balance_not_negative" '
                       'CHECK ("balance_kop" >= 0) NOT VALID')


MIGRATIONS = [
    ("0001_initial", _0001_initial),
    ("0002_bitrix24", _0002_bitrix24),
    ("0003_notifications", _0003_notifications),
    ("0004_scheduler", _0004_scheduler),
    ("0005_kpis", _0005_kpis),
    ("0006_portal_settings", _0006_portal_settings),
    ("0007_trust", _0007_trust),
    ("0008_portal", _0008_portal),
    ("0009_work", _0009_work),
    ("0013_data", _0013_data),
    ("0014_follow", _0014_follow),
    ("0011_api", _0011_api),
    ("0010_ops", _0010_ops),
    ("0012_ledger", _0012_ledger),
    ("0015_workers", _0015_workers),
    ("0016_indexes", _0016_indexes),
    ("0017_keys", _0017_keys),
    ("0018_balance_check", _0018_balance_check),
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
