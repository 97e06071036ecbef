"""`flask --app api data ...`: import clients from a CSV, export cards and movements,
forget a client, read the audit trail. Each command prints a line of what it did."""
from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta

import click
from flask.cli import AppGroup

from api.data import audit, csvout, exports, forget, imports
from api.data.csvsource import SourceError
from api.db import connection
from api.models import Portal


@click.group("data", cls=AppGroup, help="Import, export, forget a client, audit trail.")
def data_cli():
    pass


def _portal(member_id: str) -> Portal:
    portal = Portal.get_or_none(Portal.member_id == member_id)
    if portal is None:
        raise click.ClickException(f"No portal {member_id}.")
    return portal


def _say(line: str) -> None:
    click.echo(line, err=True)  # progress on stderr: stdout may be a CSV


@data_cli.command("import", help="Import clients from a CSV: a dry run unless --apply.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
@click.option("--apply", is_flag=True, help="Write it (after reading the dry run's report).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write every line's outcome to this CSV.")
@click.option("--category", "categories", multiple=True,
              help="A known client category (repeat); default: those the cards carry.")
def import_command(path: str, member_id: str, apply: bool, report_path: str | None,
                   categories: tuple[str, ...]):
    with connection():
        portal = _portal(member_id)
        actor = audit.cli_actor()
        with open(path, "rb") as source, _report_file(report_path) as writer:
            try:
                report = imports.run(portal, source, apply=apply, actor=actor,
                                     categories=list(categories), progress=_say,
                                     on_outcome=writer)
            except SourceError as exc:
                raise click.ClickException(str(exc))
        if apply:
            audit.record(portal, actor, "data.import", source="cli", details={
                "file": path.rsplit("/", 1)[-1], "counts": dict(report.counts)})
    _summary(report, report_path, apply)


@data_cli.command("import-crm", help="Import balances from a numeric contact field: a dry run unless --apply.")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
@click.option("--field", required=True, help="The contact field, e.g. UF_CRM_BALLY.")
@click.option("--apply", is_flag=True, help="Write it (after reading the dry run's report).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write every contact's outcome to this CSV.")
@click.option("--category", "categories", multiple=True, help="A known client category.")
def import_crm_command(member_id: str, field: str, apply: bool, report_path: str | None,
                       categories: tuple[str, ...]):
    from flask import current_app

    from activities.b24client import B24Error
    from activities.portals import B24Settings
    from api.ledger.errors import LedgerError
    from scheduler import crm_import

    with connection():
        portal, actor = _portal(member_id), audit.cli_actor()
        with _report_file(report_path) as writer:
            try:
                report = crm_import.run(portal, B24Settings.from_config(current_app.config), field,
                                        apply=apply, actor=actor, categories=list(categories),
                                        progress=_say, on_outcome=writer)
            except LedgerError as exc:
                raise click.ClickException(exc.message)
            except B24Error as exc:
                raise click.ClickException(f"Bitrix24 refused: {exc.code} {exc.description}")
        if apply:
            audit.record(portal, actor, "data.import", source="cli",
                         details={"field": field, "counts": dict(report.counts)})
    _summary(report, report_path, apply)


def _summary(report, report_path: str | None, apply: bool) -> None:
    click.echo(report.summary())
    for reason, count in report.reasons.most_common():
        click.echo(f"  refused {reason}: {count:,}")
    for outcome in report.refusals[:20]:
        click.echo(f"  line {outcome.line}: {outcome.reason}")
    if report_path:
        click.echo(f"Report of every line: {report_path}")
    if not apply:
        click.echo("Nothing was written. Run again with --apply to import.")


class _report_file:
    """Writes each outcome to the report CSV as it is decided (nothing kept in memory)."""

    def __init__(self, path: str | None):
        self.path, self.file, self.writer = path, None, None

    def __enter__(self):
        if self.path:
            self.file = open(self.path, "w", encoding="utf-8", newline="")
            self.writer = csvout.writer(self.file, imports.REPORT_HEADER)
        return self

    def __call__(self, outcome) -> None:
        if self.writer:
            self.writer.writerow([csvout.safe(v) for v in imports.report_row(outcome)])

    def __exit__(self, *exc):
        if self.file:
            self.file.close()
        return False


@data_cli.group("export", help="Cards or a period's movements as CSV (streamed).")
def export_group():
    pass


def _write(output: str | None, header, rows) -> int:
    count = 0

    def counted():
        nonlocal count
        for row in rows:
            count += 1
            if count % 100_000 == 0:
                _say(f"{count:,} rows written…")
            yield row

    with (open(output, "w", encoding="utf-8", newline="") if output
          else nullcontext()) as out:
        for piece in csvout.pieces(header, counted()):
            if out is None:
                click.echo(piece, nl=False)
            else:
                out.write(piece)
    return count


@export_group.command("cards", help="Every card with balance, tier and totals.")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
@click.option("-o", "--output", default=None, help="File to write (default: stdout).")
def export_cards(member_id: str, output: str | None):
    with connection():
        count = _write(output, exports.CARD_HEADER, exports.card_rows(_portal(member_id)))
    _say(f"Exported {count:,} cards{' to ' + output if output else ''}.")


@export_group.command("movements", help="Every ledger entry of a period (UTC days).")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="The first day, included.")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="The last day, included.")
@click.option("-o", "--output", default=None, help="File to write (default: stdout).")
def export_movements(member_id: str, start, end, output: str | None):
    first, last = start.date(), end.date() + timedelta(days=1)
    with connection():
        count = _write(output, exports.MOVEMENT_HEADER,
                       exports.movement_rows(_portal(member_id), first, last))
    _say(f"Exported {count:,} movements from {first} to {end.date()}"
         f"{' to ' + output if output else ''}.")


@data_cli.command("forget", help="Forget a client (152-FZ): erase personal data, keep the ledger.")
@click.argument("phone")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
@click.option("--reason", required=True, help="Why (the request's reference): recorded.")
def forget_command(phone: str, member_id: str, reason: str):
    from api.ledger.cards import card_number
    from api.ledger.errors import LedgerError

    with connection():
        try:
            card = forget.anonymise(_portal(member_id), card_number(phone), actor=audit.cli_actor(),
                                    reason=reason, source="cli")
        except LedgerError as exc:
            raise click.ClickException(exc.message)
    # The phone is not echoed back: this line may end up in a log.
    click.echo(f"Client forgotten: card {card.id} is now {card.number}; its ledger is kept.")


@data_cli.command("audit", help="The audit trail as CSV, newest first.")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
@click.option("--action", default=None, help="Only actions starting with this.")
@click.option("-o", "--output", default=None, help="File to write (default: stdout).")
def audit_command(member_id: str, action: str | None, output: str | None):
    with connection():
        rows = map(audit.csv_row, audit.entries(_portal(member_id), action=action))
        count = _write(output, audit.CSV_HEADER, rows)
    _say(f"Exported {count:,} audit entries.")


@data_cli.command("reconcile", help="Compare our card, balance and tier with every contact; repair.")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
def reconcile_command(member_id: str):
    from flask import current_app

    from activities.b24client import B24Error
    from activities.portals import B24Settings
    from scheduler import reconcile

    with connection():
        try:
            report = reconcile.reconcile(_portal(member_id),
                                         B24Settings.from_config(current_app.config),
                                         actor=audit.cli_actor())
        except B24Error as exc:
            raise click.ClickException(f"Bitrix24 refused: {exc.code} {exc.description}")
    click.echo(f"Reconciled: {report.summary()}; repairs go out with the outbox.")
    for line in report.lines:
        click.echo(f"  {line}")


def init_app(app) -> None:
    app.cli.add_command(data_cli)
    audit.init_app(app)
