"""Per-portal API keys: `Authorization: Bearer <key>`. Only a hash is stored.

A key has scopes: `read` (cards, history, rules), `write` (issue and block cards, money
movements), `admin` (rules, notification settings, webhooks, the client site, exports and
the audit trail). A view needs `read` for GET and `write` otherwise unless it or its
blueprint says `admin`; a key without the scope gets 403 `insufficient_scope`.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

import click
from flask.cli import AppGroup
from flask import current_app, g, request

from api import keycache
from api.clock import utcnow
from api.db import connection
from api.errors import ApiError
from api.models import ApiKey, Portal

KEY_PREFIX = "lk_"
SHOWN_PREFIX_LEN = 10
SCOPES = ("read", "write", "admin")
DEFAULT_SCOPES = ("read", "write")  # `keys create` without --scope: what a web site needs


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(portal: Portal, label: str | None = None, scopes=SCOPES) -> str:
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    ApiKey.create(portal=portal, prefix=key[:SHOWN_PREFIX_LEN], key_hash=hash_key(key), label=label,
                  scopes=" ".join(s for s in SCOPES if s in scopes))
    return key


def requires(scope: str):
    """Mark a view as needing a scope other than its method's default."""
    def mark(view):
        view.required_scope = scope
        return view
    return mark


def required_scope() -> str:
    """The view's own scope, else its blueprint's (`bp.required_scope`), else by method."""
    # The objects behind the proxies, once: every request of the API passes here.
    app, req = current_app._get_current_object(), request._get_current_object()
    view = app.view_functions.get(req.endpoint)
    blueprint = app.blueprints.get(req.blueprint or "")
    default = "read" if req.method in ("GET", "HEAD", "OPTIONS") else "write"
    return getattr(view, "required_scope", None) or getattr(blueprint, "required_scope", default)


def require_api_key() -> None:
    """before_request of every /api/v1 blueprint: sets g.portal and g.actor."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, "unauthorized", "An Authorization: Bearer <API key> header is required.")
    digest = hash_key(key)
    row = keycache.lookup(digest)  # cached per process for seconds
    # The lookup is by hash; compare again in constant time so timing tells nothing.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise ApiError(401, "unauthorized", "The API key is unknown or revoked.")
    needed = required_scope()
    if needed not in row.scopes.split():
        raise ApiError(403, "insufficient_scope", f"This API key lacks the '{needed}' scope.")
    found = g._get_current_object()  # one lookup behind the proxy for the three names
    found.portal = row.portal
    found.actor = f"api:{row.prefix}"
    found.actor_label = row.label  # the audit trail names the key by its label (api.data.audit)


@click.group("keys", cls=AppGroup, help="API keys for the REST API, one portal each.")
def keys_cli():
    pass


@keys_cli.command("create", help="Create a key for a portal; it is printed once.")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
@click.option("--label", default=None, help="What the key is for (shown in listings).")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="read: cards; write: movements; admin: rules and settings. "
                   "Repeat for several; default: read and write.")
def create_command(member_id: str, label: str | None, scopes: tuple[str, ...]):
    scopes = scopes or DEFAULT_SCOPES
    with connection():
        portal, made = Portal.get_or_create(member_id=member_id)
        key = create_key(portal, label, scopes)
    note = " (new portal, not yet installed in Bitrix24)" if made else ""
    click.echo(f"Created an API key for portal {member_id}{note} with scopes "
               f"{', '.join(s for s in SCOPES if s in scopes)}. It is shown only now:")
    click.echo(key)


@keys_cli.command("list", help="List a portal's keys (prefixes only).")
@click.option("--portal", "member_id", required=True, help="The portal's member_id.")
def list_command(member_id: str):
    with connection():
        rows = list(ApiKey.select().join(Portal).where(Portal.member_id == member_id))
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        click.echo(f"{row.prefix}…  {state}  [{row.scopes}]  {row.label or ''}  "
                   f"created {row.created_at:%Y-%m-%d}")
    click.echo(f"{len(rows)} key(s) for portal {member_id}.")


@keys_cli.command("revoke", help="Revoke the keys that start with PREFIX.")
@click.argument("prefix")
def revoke_command(prefix: str):
    with connection():
        count = (ApiKey.update(revoked_at=utcnow())
                 .where((ApiKey.prefix == prefix) & ApiKey.revoked_at.is_null()).execute())
    keycache.forget()  # this process at once, the others within keycache.KEY_CACHE_S
    click.echo(f"Revoked {count} key(s) starting with {prefix}.")


def init_app(app) -> None:
    app.cli.add_command(keys_cli)
