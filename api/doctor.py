"""`flask --app api doctor`: is this installation ready for production, and if not,
what exactly is missing or wrong. One line per check; exit 1 when any check fails.

It reads settings and the database only: it never calls Bitrix24 or UniSender.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from peewee import DatabaseError, PostgresqlDatabase

from api import logs
from api.db import connection, db

SECRET_KEY_MIN = 32  # characters; `secrets.token_hex(32)` gives 64
OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def public_url(app: Flask) -> Check:
    url = (app.config.get("PUBLIC_URL") or "").strip()
    if not url:
        return Check("public URL", FAIL, "LOYALTY_PUBLIC_URL is not set: Bitrix24 handler URLs "
                                         "are built from it (https://loyalty.example.com)")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return Check("public URL", FAIL, f"LOYALTY_PUBLIC_URL={url}: Bitrix24 calls only https "
                                         "handlers; give the https address of the proxy")
    if _local(parts.hostname):
        return Check("public URL", WARN, f"{url} is a local address: a cloud portal cannot "
                                         "reach it")
    return Check("public URL", OK, url)


def _local(host: str) -> bool:
    if host == "localhost" or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback


def secret_key(app: Flask) -> Check:
    if app.config.get("SECRET_KEY_GENERATED") or not app.config.get("SECRET_KEY"):
        return Check("secret key", FAIL, "LOYALTY_SECRET_KEY is not set: the key generated in "
                                         "this host's instance folder is not shared with other "
                                         "hosts or containers, so their signed links differ")
    if len(str(app.config["SECRET_KEY"])) < SECRET_KEY_MIN:
        return Check("secret key", FAIL, f"LOYALTY_SECRET_KEY is shorter than {SECRET_KEY_MIN} "
                                         "characters: python3 -c 'import secrets; "
                                         "print(secrets.token_hex(32))'")
    return Check("secret key", OK, "LOYALTY_SECRET_KEY set")


def bitrix24(app: Flask) -> Check:
    missing = [name for name in ("B24_CLIENT_ID", "B24_CLIENT_SECRET") if not app.config.get(name)]
    if missing:
        return Check("Bitrix24 app", FAIL, f"{' and '.join(missing)} not set: copy them from the "
                                           "portal's local application, or tokens cannot be "
                                           "refreshed")
    return Check("Bitrix24 app", OK, f"B24_CLIENT_ID {app.config['B24_CLIENT_ID']}, "
                                     "B24_CLIENT_SECRET set")


def proxy(app: Flask) -> Check:
    from activities.public_url import proxy_hops

    hops = proxy_hops(app.config)
    if hops:
        return Check("proxy", OK, f"LOYALTY_PROXY_HOPS={hops}: X-Forwarded-For/-Proto/-Host "
                                  f"of {hops} proxy(ies) trusted")
    return Check("proxy", WARN, "LOYALTY_PROXY_HOPS is 0: behind the https proxy set it to 1, "
                                "or client addresses and the scheme are the proxy's")


def database(app: Flask) -> Check:
    from api.migrations import MIGRATIONS
    from api.models import SchemaVersion

    url = logs.safe_url(str(app.config.get("DATABASE_URL", "")))
    try:
        with connection():
            db.execute_sql("SELECT 1")
            done = ({row.name for row in SchemaVersion.select(SchemaVersion.name)}
                    if SchemaVersion.table_exists() else set())
    except DatabaseError as exc:
        return Check("database", FAIL, f"{url} is not reachable: {_first_line(exc)}")
    missing = [name for name, _ in MIGRATIONS if name not in done]
    if missing:
        what = f"missing {', '.join(missing)}" if done else "no tables yet"
        return Check("database", FAIL, f"{url} reachable, not migrated ({what}): run "
                                       "`flask --app api db upgrade`")
    if not isinstance(db.obj, PostgresqlDatabase):
        return Check("database", WARN, f"{url}: SQLite, fine for one machine; production runs on "
                                       "PostgreSQL")
    return Check("database", OK, f"{url} reachable, migrated ({len(MIGRATIONS)} migrations)")


def scheduler(app: Flask) -> Check:
    from api.models import Heartbeat
    from scheduler import heartbeat

    try:
        with connection():
            if not Heartbeat.table_exists():
                return Check("scheduler", FAIL, "unknown until the database is migrated")
            row, age = heartbeat.last(), heartbeat.age()
    except DatabaseError as exc:
        return Check("scheduler", FAIL, f"unknown, the database cannot tell: {_first_line(exc)}")
    if row is None:
        return Check("scheduler", FAIL, "has never run on this database: start "
                                        "`flask --app api scheduler run` (deploy/)")
    seconds = int(age.total_seconds())
    said = f"last acted {seconds:,} s ago ({row.holder}, {row.job})"
    if age > heartbeat.STALE_AFTER:
        return Check("scheduler", FAIL, f"{said}: not running, or not holding its lock")
    return Check("scheduler", OK, said)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return logs.mask(text.splitlines()[0] if text else type(exc).__name__)


CHECKS: tuple[Callable[[Flask], Check], ...] = (public_url, secret_key, bitrix24, proxy,
                                                database, scheduler)


def run_checks(app: Flask) -> list[Check]:
    return [check(app) for check in CHECKS]


@click.command("doctor", help="Check the settings, database and scheduler a production "
                              "service needs; exit 1 if anything is missing or wrong.")
@with_appcontext
def doctor_command():
    checks = run_checks(current_app._get_current_object())
    for check in checks:
        click.echo(f"  {check.status:<4}  {check.name:<12}  {check.detail}")
    failed = [c.name for c in checks if c.status == FAIL]
    warned = sum(c.status == WARN for c in checks)
    if failed:
        click.echo(f"{len(failed)} problem(s): {', '.join(failed)}. Not ready.", err=True)
        raise SystemExit(1)
    click.echo(f"Ready: {len(checks)} checks, {warned} warning(s).")
