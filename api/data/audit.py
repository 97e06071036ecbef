"""The audit trail: one append-only table of what staff and API keys changed.

Two ways in. `record` is called by the actions of this package (import, anonymise,
merge) and by CLI commands. `init_app` adds an after_request hook that records every
successful write request of the REST API and of the app's pages (money, rules,
settings, access, cards), so no view has to remember to. Nothing here stores a phone
or a name: a card is named by its id (`card:17`), the path by its URL rule.

A money movement of the REST API writes its line itself, inside the movement's own
transaction (`record_request`, from api.views.operations): the line exists exactly
when the movement does. The hook's lines come after the change has committed, so a
failed line there is logged and the change stands.
"""
from __future__ import annotations

import getpass
import json
import logging
from datetime import datetime

from api.clock import utcnow
from api.data.rows import new_row
from api.ledger import sql
from api.models import ApiKey, AuditEntry, Card, Portal

log = logging.getLogger(__name__)
PAGE_MAX = 200
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Where Bitrix24 itself calls us (events, activities, install): not a staff action.
SKIPPED_PREFIXES = ("/b24/events", "/b24/activities", "/b24/install")
SKIPPED_RULES = ("/b24/app",)  # opening the app in its frame: a redirect that changes nothing


def record(portal: Portal | int | None, actor: str, action: str, *, target: str | None = None,
           source: str | None = None, details: dict | None = None,
           now: datetime | None = None, answer: bool = True) -> AuditEntry:
    """Append a line; with answer=False its id is not read back (row.id stays None) and
    in a transaction the INSERT goes out with the next statement (api.ledger.sql.later)."""
    return _append(_request_state(), portal, actor, action, target, source,
                   _DETAILS(details) if details else None, now, answer)


def _append(state, portal, actor: str, action: str, target: str | None, source: str | None,
            details: str | None, now: datetime | None, answer: bool) -> AuditEntry:
    """`record` with the request's `g` (or None) and the details as JSON text."""
    if state is not None:
        state.audit_recorded = True  # the request hook then does not record it a second time
    row = new_row(AuditEntry, {"portal": portal}, {
        "actor": with_key_label(actor or "unknown", state)[:200], "action": action[:100],
        "target": target[:100] if target else None, "source": (source or "")[:100] or None,
        "details": details, "created_at": now or utcnow()})
    row.id = sql.insert_row(row, answer=answer)  # every movement writes one: no builder
    return row


_DETAILS = json.JSONEncoder(ensure_ascii=False, default=str).encode  # built once
_JSON_TEXT = json.encoder.encode_basestring  # what _DETAILS writes a string with


def _request_details(status, key, replayed) -> str:
    """_DETAILS of a request line's facts, written out for the types every request has
    (the encoder's set-up was a fifth of the line); anything else goes to _DETAILS."""
    if type(status) is int and type(replayed) is bool and (key is None or type(key) is str):
        return (f'{{"status": {int.__repr__(status)}, "idempotency_key": '
                f'{"null" if key is None else _JSON_TEXT(key)}, '
                f'"replayed": {"true" if replayed else "false"}}}')
    return _DETAILS({"status": status, "idempotency_key": key, "replayed": replayed})


def _request_state():
    """The request's `g` itself (not its proxy), or None outside a request."""
    from flask import g, has_request_context

    return g._get_current_object() if has_request_context() else None


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name in a container: still say it was the shell
        return "cli"


def card_target(card: Card | int) -> str:
    return f"card:{getattr(card, 'id', card)}"


def entries(portal: Portal, *, action: str | None = None, actor: str | None = None,
            target: str | None = None, since: datetime | None = None,
            until: datetime | None = None):
    """The portal's trail, newest first, narrowed by what is given."""
    query = AuditEntry.select().where(AuditEntry.portal == portal)
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    if actor:
        query = query.where(AuditEntry.actor.contains(actor))
    if target:
        query = query.where(AuditEntry.target == target)
    if since:
        query = query.where(AuditEntry.created_at >= since)
    if until:
        query = query.where(AuditEntry.created_at < until)
    return query.order_by(AuditEntry.id.desc())


CSV_HEADER = ("id", "created_at_utc", "actor", "action", "target", "source", "details")


def csv_row(row: AuditEntry) -> list:
    from api.data.csvout import safe

    return [row.id, row.created_at.isoformat(" ", "seconds"), safe(row.actor), row.action,
            row.target or "", row.source or "", safe(row.details or "")]


def as_dict(row: AuditEntry) -> dict:
    return {"id": row.id, "created_at": row.created_at.isoformat(), "actor": row.actor,
            "action": row.action, "target": row.target, "source": row.source,
            "details": json.loads(row.details) if row.details else None}


# --- every write request ----------------------------------------------------------------------

def _after_request(response):
    from flask import g, request

    # Every request passes here: the objects behind the proxies are looked up once, and
    # the cheap tests come first (a read; a movement that wrote its own line).
    req = request._get_current_object()
    if req.method not in WRITE_METHODS:
        return response
    state = g._get_current_object()
    if getattr(state, "portal", None) is None or getattr(state, "audit_recorded", False):
        return response
    rule = req.url_rule
    if rule is None or rule.rule in SKIPPED_RULES or req.path.startswith(SKIPPED_PREFIXES) \
            or not _changed(req.path, response.status_code, state):
        return response
    try:
        record_request(response.status_code,
                       replayed=response.headers.get("Idempotency-Hit") == "true")
    except Exception:  # the action is done; a failed trail line must not turn it into a 500
        log.exception("audit record failed for %s %s", req.method, rule.rule)
    return response


def record_request(status: int, replayed: bool = False) -> None:
    """The line of the write request being served, by the key or user behind it."""
    import flask  # a plain import: `from flask import …` walks its fromlist on every call

    req, state = flask.request._get_current_object(), flask.g._get_current_object()
    _append(state, state.portal, _request_actor(state), f"{req.method} {req.url_rule.rule}",
            _request_target(state.portal, req.view_args or {}, state), req.remote_addr,
            _request_details(status, req.headers.get("Idempotency-Key"), replayed), None,
            False)


def _changed(path: str, status: int, g) -> bool:
    """The API answers a write with 2xx. The app's pages answer a POST that only asks
    for confirmation with its form, and a done write by moving on to the next page: a
    redirect, or the page that posts on (pages.web.redirect_to renders CONTINUE_PAGE)."""
    if path.startswith("/api/"):
        return 200 <= status < 300
    return 300 <= status < 400 or getattr(g, "page_moved_on", False)


CONTINUE_PAGE = "pages/continue.html"


def _on_template(sender, template, context, **extra):
    from flask import g

    if template.name == CONTINUE_PAGE:
        g.page_moved_on = True


def _request_actor(g) -> str:
    actor = g.get("actor")  # g.get: no AttributeError raised and caught for a name not set
    viewer = g.get("viewer")
    if actor is None and viewer is not None:
        actor = viewer.actor  # a Bitrix24 user in the app's pages
    return actor or "unknown"


def with_key_label(actor: str, state=None) -> str:
    """"api:lk_Ab3xYz9" → "api:lk_Ab3xYz9 (web site)": the key's label says whose it is.
    In a request the key was just read (g.actor_label); elsewhere it is looked up."""
    if not actor.startswith("api:"):
        return actor
    state = state if state is not None else _request_state()
    if state is not None and state.get("actor") == actor and "actor_label" in state:
        label = state.actor_label
    else:
        key = ApiKey.get_or_none(ApiKey.prefix == actor[len("api:"):])
        label = key.label if key is not None else None
    return f"{actor} ({label})" if label else actor


def _request_target(portal: Portal, view_args: dict, state) -> str | None:
    """A card by its id, never by its number (the number is the client's phone)."""
    held = getattr(state, "card_id", None)  # the card the operation held (api.views)
    if held is not None:
        return card_target(held)
    number = view_args.get("number")
    if number is None:
        card_id = view_args.get("card_id")
        return card_target(card_id) if card_id is not None else None
    from api.ledger.cards import card_number
    from api.ledger.errors import LedgerError

    try:
        card = Card.get_or_none((Card.portal == portal) & (Card.number == card_number(number)))
    except LedgerError:
        card = None
    return card_target(card) if card is not None else None


def init_app(app) -> None:
    from flask import template_rendered

    app.after_request(_after_request)
    template_rendered.connect(_on_template, app)
