"""`flask --app api b24 ...`: repeat the registration, list the portals, mark one removed."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from flask import current_app

from activities.b24client import B24Error
from activities.portals import B24Settings, client_for
from activities.registration import register
from api.clock import utcnow
from api.db import connection
from api.models import Card, Portal


@click.group("b24", cls=AppGroup, help="Bitrix24 portals and registrations.")
def b24_cli():
    pass


@b24_cli.command("register", help="Register activities, robots, events and fields again.")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
def register_command(member_id: str):
    settings = B24Settings.from_config(current_app.config)
    if not settings.public_url:
        raise click.ClickException("Set LOYALTY_PUBLIC_URL: handler URLs are built from it.")
    with connection():
        portal = Portal.get_or_none(Portal.member_id == member_id)
        if portal is None or not portal.access_token:
            raise click.ClickException(f"Portal {member_id} is not installed (no tokens).")
        try:
            report = register(client_for(portal, settings), settings, portal.installed_by_user_id)
        except B24Error as exc:
            raise click.ClickException(f"Bitrix24 refused: {exc.code} {exc.description}")
    click.echo(f"Portal {member_id}: {report.summary()}.")
    for key, text in report.errors.items():
        click.echo(f"  error {key}: {text}")


@b24_cli.command("portals", help="List the portals and their state.")
def portals_command():
    with connection():
        rows = list(Portal.select().order_by(Portal.id))
        for portal in rows:
            cards = Card.select().where(Card.portal == portal).count()
            tokens = "tokens stored" if portal.access_token else "no tokens"
            click.echo(f"{portal.member_id}  {portal.domain or '-'}  {portal.status}  {tokens}  "
                       f"{cards} cards")
    click.echo(f"{len(rows)} portal(s).")


@b24_cli.command("uninstalled", help="Mark a portal as uninstalled when its ONAPPUNINSTALL "
                 "event never arrived, so a reinstall is admitted again. The ledger stays.")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
def uninstalled_command(member_id: str):
    with connection():
        changed = Portal.update(status="uninstalled", access_token=None, refresh_token=None,
                                updated_at=utcnow()).where(
            (Portal.member_id == member_id) & (Portal.status != "uninstalled")).execute()
        if not changed and Portal.get_or_none(Portal.member_id == member_id) is None:
            raise click.ClickException(f"No portal {member_id}.")
    click.echo(f"Portal {member_id}: " + ("marked uninstalled; its tokens are forgotten, its "
               "cards and ledger kept. A reinstall by its admin is admitted again." if changed
               else "already uninstalled, nothing changed."))


def init_app(app) -> None:
    app.cli.add_command(b24_cli)
