"""How every `flask --app api …` command ends when something is wrong: one readable
line on stderr and exit status 1, never a traceback (that goes to the log at DEBUG).

The app's command group hands out each command wrapped once; the wrapper also gives
the command's log lines a run id of their own.
"""
from __future__ import annotations

import logging

import click
from flask.cli import AppGroup, ScriptInfo
from peewee import DatabaseError, ImproperlyConfigured, InterfaceError, OperationalError

from api import logs

log = logging.getLogger(__name__)
MIGRATE_HINT = "run `flask --app api db upgrade`"
_NOT_MIGRATED = ("no such table", "does not exist", "undefinedtable")


class ReadableGroup(AppGroup):
    """The app's `cli` group: every command it returns fails in one readable line."""

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        return None if command is None else readable(command)


def readable(command: click.Command) -> click.Command:
    if getattr(command, "_loyalty_readable", False):
        return command
    invoke = command.invoke

    def guarded(ctx):
        with logs.run_id("cli"):
            try:
                return invoke(ctx)
            except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except Exception as exc:  # noqa: BLE001 - the one place a command's failure is told
                log.debug("command %s failed", command.name, exc_info=True)
                raise click.ClickException(describe(exc, _database_url(ctx))) from None

    command.invoke = guarded
    command._loyalty_readable = True
    return command


def _database_url(ctx: click.Context) -> str:
    info = ctx.find_object(ScriptInfo)  # the app is loaded by now: this reads its cache
    return str(info.load_app().config.get("DATABASE_URL", "")) if info else "?"


def describe(exc: Exception, database_url: str) -> str:
    """One line that says what is wrong and, where we know it, what to do."""
    url = logs.safe_url(database_url)
    first = logs.mask(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, DatabaseError) and any(m in str(exc).lower() for m in _NOT_MIGRATED):
        return f"Database {url} is not migrated ({first}): {MIGRATE_HINT}."
    if isinstance(exc, (OperationalError, InterfaceError)):
        return f"Database {url} is not reachable: {first}"
    if isinstance(exc, ImproperlyConfigured):
        return f"Database {url} cannot be used: {first}"
    if isinstance(exc, DatabaseError):
        return f"Database {url} refused: {first}"
    return (f"Unexpected {type(exc).__name__}: {first} "
            "(LOYALTY_LOG_LEVEL=DEBUG logs the traceback)")


def init_app(app) -> None:
    """Swap in the readable group (keeping whatever was registered already)."""
    group = ReadableGroup(app.cli.name)
    group.commands.update(app.cli.commands)
    app.cli = group
