"""An honest command line: --dry-run writes and sends nothing, --portal limits every
job, a future birthday run needs --dry-run, counts are what happened, and failures are
one readable line with a non-zero exit, never a traceback."""
from __future__ import annotations

from datetime import date, datetime

import click
import pytest
import responses
from click.testing import CliRunner
from flask.cli import FlaskGroup

from api import create_app
from api.ledger import cards, rules
from api.models import Card, Entry, Notification, Operation, Outbox, Portal
from api.outbox import enqueue
from scheduler import cli as scheduler_cli

PROFILE = {"phone": "9161234567", "last_name": "Петрова", "first_name": "Анна",
           "client_category": "Врач", "contact_id": 42, "email": "anna@example.ru",
           "birthdate": date(1990, 3, 1), "manager_id": 7}


def queue_work(portal):
    """One Bitrix24 write and one e-mail waiting for the outbox pass."""
    enqueue(portal, f"test:{portal.id}", {"u": ("crm.contact.update",
                                                {"id": 42, "fields": {"NAME": "Анна"}})})
    Notification.create(portal=portal, key=f"mail:{portal.id}", channel="email",
                        template="accrual_email", recipient="anna@example.ru", subject="s",
                        body="b")


def statuses(model):
    return sorted(row.status for row in model.select())


# --- outbox -----------------------------------------------------------------------------------

def test_outbox_dry_run_sends_nothing_and_says_what_is_due(runner, b24, installed):
    queue_work(installed)
    result = runner.invoke(args=["scheduler", "run-once", "outbox", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would work 0 activity run(s), 1 Bitrix24 batch(es), 1 message(s)" in result.output
    assert f"outbox 1: test:{installed.id}" in result.output
    assert b24.requests == 0 and b24.sent("crm.contact.update") == []
    assert statuses(Outbox) == ["pending"] and statuses(Notification) == ["pending"]
    assert Outbox.get().attempts == 0  # not even claimed


def test_outbox_counts_every_queue_it_worked(runner, b24, installed):
    queue_work(installed)
    result = runner.invoke(args=["scheduler", "run-once", "outbox"])
    assert result.exit_code == 0, result.output
    # The e-mail has no UniSender key on this portal: attempted, and failed visibly.
    assert "worked 0 activity run(s), 1 Bitrix24 batch(es), 1 message(s)" in result.output
    assert len(b24.sent("crm.contact.update")) == 1
    assert Notification.get().status != "pending"


def test_outbox_portal_works_only_that_portal(runner, app):
    # Uninstalled portals: their rows close as failed without any HTTP.
    mine = Portal.create(member_id="mine", status="uninstalled")
    other = Portal.create(member_id="other", status="uninstalled")
    enqueue(mine, "a", {"u": ("crm.contact.update", {"id": 1, "fields": {}})})
    enqueue(other, "b", {"u": ("crm.contact.update", {"id": 1, "fields": {}})})
    result = runner.invoke(args=["scheduler", "run-once", "outbox", "--portal", "mine"])
    assert result.exit_code == 0, result.output
    assert "Outbox for mine: worked 0 activity run(s), 1 Bitrix24 batch(es)" in result.output
    assert Outbox.get(Outbox.portal == mine).status == "failed"
    assert Outbox.get(Outbox.portal == other).status == "pending"


def test_an_unknown_portal_is_one_line_and_exit_1(runner, app):
    for job in scheduler_cli.JOB_NAMES:
        result = runner.invoke(args=["scheduler", "run-once", job, "--portal", "nope"])
        assert result.exit_code == 1, (job, result.output)
        assert result.output.strip() == ("Error: No portal 'nope': `flask --app api b24 "
                                         "portals` lists them.")


# --- sync -------------------------------------------------------------------------------------

@pytest.fixture
def listing(app):
    from test_sync import ListingPortal

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield ListingPortal(rsps)


def test_sync_dry_run_reads_and_changes_nothing(runner, listing, installed):
    listing.add_contact(42, NAME="Новое", LAST_NAME="Имя", PHONE=[], EMAIL=[])
    card, _ = cards.create_card(installed, PROFILE, actor="t")
    result = runner.invoke(args=["scheduler", "run-once", "sync", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"{installed.member_id}: 1 contacts read, 1 card(s) would change" in result.output
    assert Card.get_by_id(card.id).first_name == "Анна"
    real = runner.invoke(args=["scheduler", "run-once", "sync"])
    assert "1 card(s) updated" in real.output and Card.get_by_id(card.id).first_name == "Новое"


def test_sync_portal_syncs_only_that_portal(runner, listing, installed):
    listing.add_contact(42, NAME="Новое", LAST_NAME="Имя", PHONE=[], EMAIL=[])
    Portal.create(member_id="other", domain="other.bitrix24.ru", status="active",
                  client_endpoint=installed.client_endpoint, access_token="access-1",
                  refresh_token="refresh-1")
    result = runner.invoke(args=["scheduler", "run-once", "sync", "--portal", "other"])
    assert result.exit_code == 0, result.output
    assert "other: 1 contacts read" in result.output and installed.member_id not in result.output
    assert listing.requests == 1


def test_a_failed_sync_exits_non_zero(runner, listing, installed):
    listing.failures["batch"] = [(503, {"error": "QUERY_LIMIT_EXCEEDED",
                                        "error_description": "Too many requests"})]
    result = runner.invoke(args=["scheduler", "run-once", "sync"])
    assert result.exit_code == 1 and "Contact sync failed for 1 of 1 portal(s)" in result.output
    assert "Traceback" not in result.output


# --- birthdays --------------------------------------------------------------------------------

def birthday_on_1_march(portal, monkeypatch, now: datetime) -> None:
    """A card born on 1 March, a 500 ₽ birthday bonus, and the CLI's clock at `now`."""
    monkeypatch.setattr(scheduler_cli, "utcnow", lambda: now)
    rules.save(portal, {"birthday_bonus": "500"}, actor="t")
    cards.create_card(portal, PROFILE, actor="t")


def test_a_future_birthday_run_is_refused_without_dry_run(runner, installed, monkeypatch):
    birthday_on_1_march(installed, monkeypatch, datetime(2027, 2, 20, 9))
    result = runner.invoke(args=["scheduler", "run-once", "birthdays", "--date", "2027-03-01"])
    assert result.exit_code == 1, result.output
    assert "2027-03-01 is in the future" in result.output and "--dry-run" in result.output
    assert Entry.select().where(Entry.kind == "birthday").count() == 0
    assert not Operation.select().where(Operation.key.contains("birthday")).exists()
    preview = runner.invoke(args=["scheduler", "run-once", "birthdays", "--date", "2027-03-01",
                                  "--dry-run"])
    assert preview.exit_code == 0 and "would do 2 action(s)" in preview.output


def test_a_rerun_says_it_did_nothing(runner, installed, monkeypatch):
    birthday_on_1_march(installed, monkeypatch, datetime(2027, 3, 1, 9))
    first = runner.invoke(args=["scheduler", "run-once", "birthdays", "--date", "2027-03-01"])
    assert first.exit_code == 0, first.output
    assert "2 action(s) due; did 1 ledger entry(ies), " in first.output
    again = runner.invoke(args=["scheduler", "run-once", "birthdays"])
    assert "2 action(s) due; nothing new to do (already done)" in again.output
    assert Entry.select().where(Entry.kind == "birthday").count() == 1


def test_date_is_only_for_birthdays(runner, installed):
    result = runner.invoke(args=["scheduler", "run-once", "expiry", "--date", "2027-03-01"])
    assert result.exit_code == 2 and "--date applies to birthdays only" in result.output


# --- failures are one line --------------------------------------------------------------------

def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or \
        isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def settings_for(url: str) -> dict:
    return {"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "test-secret"}


@pytest.mark.parametrize("args", [["scheduler", "run-once", "outbox"], ["b24", "portals"],
                                  ["db", "upgrade"], ["serve"]])
def test_database_down_is_one_readable_line(args):
    app = create_app(settings_for("postgresql://loyalty:pw-x@127.0.0.1:9/loyalty"))
    line = one_line_error(app.test_cli_runner().invoke(args=args))
    assert line.startswith("Error: Database postgresql://***@127.0.0.1:9/loyalty is not "
                           "reachable: "), line
    assert "pw-x" not in line


def test_an_unmigrated_database_says_to_upgrade(tmp_path):
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'empty.sqlite3'}"))
    line = one_line_error(app.test_cli_runner().invoke(args=["b24", "portals"]))
    assert "is not migrated" in line and "flask --app api db upgrade" in line


def test_a_mysql_url_is_refused_in_one_line_by_the_real_cli():
    group = FlaskGroup(create_app=lambda: create_app(settings_for("mysql://u:pw-y@db/loyalty")))
    result = CliRunner().invoke(group, ["scheduler", "run-once", "outbox"])
    line = one_line_error(result)
    assert line == ("Error: LOYALTY_DATABASE_URL mysql://***@db/loyalty: only sqlite:///path and "
                    "postgresql://user:password@host:5432/db are supported.")


def test_an_unexpected_failure_is_one_line(runner, app, monkeypatch):
    def boom(*a, **k):
        raise KeyError("surprise")

    monkeypatch.setattr(scheduler_cli.preview, "outbox_due", boom)
    line = one_line_error(runner.invoke(args=["scheduler", "run-once", "outbox", "--dry-run"]))
    assert line.startswith("Error: Unexpected KeyError: 'surprise'")


def walk(command: click.Command, path: str):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, f"{path} {name}")


OURS = ("api", "scheduler", "activities", "pages", "notifications", "background")


def test_every_command_and_option_has_help(app):
    missing = []
    for path, command in walk(app.cli, "flask"):
        if (getattr(command.callback, "__module__", None) or "").split(".")[0] not in OURS:
            continue  # flask's and flask-smorest's own (routes, shell, openapi)
        if path != "flask" and not (command.help or command.short_help):
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{path} {param.opts[0]}")
    assert missing == []
    names = {path for path, _ in walk(app.cli, "flask")}
    assert {"flask scheduler run-once", "flask doctor", "flask serve"} <= names
