"""The command line: keys, schema upgrades that keep data, serve's address line."""
from __future__ import annotations

from peewee import IntegerField
from playhouse.migrate import migrate as run_migrations
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

from api import migrations
from api.db import db, is_postgres
from api.ledger import cards
from api.models import ApiKey, Card, Portal, SchemaVersion
from api.serve import _safe_url


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(runner, app):
    result = runner.invoke(args=["keys", "create", "--portal", "new-portal", "--label", "site"])
    assert result.exit_code == 0, result.output
    assert "Created an API key for portal new-portal (new portal" in result.output
    key = result.output.strip().splitlines()[-1]
    row = ApiKey.get()
    assert key.startswith("lk_") and key not in (row.key_hash, row.prefix)
    listing = runner.invoke(args=["keys", "list", "--portal", "new-portal"]).output
    assert "1 key(s) for portal new-portal" in listing and key not in listing


def test_upgrade_twice_keeps_data_and_says_so(runner, app, portal):
    cards.create_card(portal, {"phone": "9161234567", "last_name": "П", "first_name": "А",
                               "client_category": "В"}, actor="t")
    assert "up to date" in runner.invoke(args=["db", "upgrade"]).output
    assert Card.select().count() == 1


def test_a_new_migration_adds_a_column_and_keeps_rows(app, portal, monkeypatch):
    migrator = PostgresqlMigrator(db.obj) if is_postgres() else SqliteMigrator(db.obj)

    def add_column():
        run_migrations(migrator.add_column("portal", "bench_flag", IntegerField(default=7)))

    monkeypatch.setattr(migrations, "MIGRATIONS",
                        [*migrations.MIGRATIONS, ("0999_test_column", add_column)])
    try:
        assert migrations.migrate() == ["0999_test_column"]
        assert migrations.migrate() == []
        row = db.execute_sql("SELECT member_id, bench_flag FROM portal").fetchone()
        assert row == ("portal-a", 7)
    finally:
        run_migrations(migrator.drop_column("portal", "bench_flag"))
        SchemaVersion.delete().where(SchemaVersion.name == "0999_test_column").execute()
    assert Portal.select().count() == 1


def test_database_urls_are_shown_without_passwords():
    assert _safe_url("postgresql://loyalty:s3cret@db:5432/x") == "postgresql://***@db:5432/x"
    assert _safe_url("sqlite:///instance/loyalty.sqlite3") == "sqlite:///instance/loyalty.sqlite3"
