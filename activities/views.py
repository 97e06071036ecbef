"""Where Bitrix24 calls us: the install URL, event handlers, and activity handlers."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping

from flask import Blueprint, current_app, jsonify, render_template, request

from activities.b24client import B24Client, B24Error, InMemoryTokenStore, PortalAuth
from activities.forms import FormError, InboundAuth, parse_event, parse_install, parse_workflow_call
from activities import public_url
from activities.portals import B24Settings, client_for
from activities.registration import register
from api.clock import utcnow
from api.models import ActivityRun, B24Event, Portal

log = logging.getLogger(__name__)
bp = Blueprint("b24", __name__, url_prefix="/b24", template_folder="templates")
ENTITY_EVENTS = ("ONCRMCONTACTUPDATE",)  # ONCRMDEALUPDATE is no longer bound: nobody read it


@bp.errorhandler(FormError)
def _bad_form(exc: FormError):
    return jsonify({"error": {"code": "bad_request", "message": exc.message,
                              "fields": {exc.field: exc.message}}}), 400


def _denied():
    return jsonify({"error": {"code": "unauthorized", "message": "Неверный application_token",
                              "fields": {}}}), 401


def _plain(value):
    """The parsed form is frozen (mappingproxy, tuples); store it as plain JSON."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def token_matches(portal: Portal | None, token: str | None) -> bool:
    stored = portal.application_token if portal else None
    return bool(stored and token) and hmac.compare_digest(stored.encode(), token.encode())


def settings() -> B24Settings:
    # LOYALTY_PUBLIC_URL, or the address a configured proxy forwarded: never the inner one.
    return public_url.for_request(B24Settings.from_config(current_app.config))


def genuine(portal: Portal, access_token: str | None) -> bool:
    """Does this token work on the portal we already know (at its stored endpoint)?

    Guards a known portal against an install or event forged with another endpoint.
    """
    if not access_token or not portal.client_endpoint:
        return False
    auth = PortalAuth(portal.member_id, portal.client_endpoint, access_token, "")
    probe = B24Client(auth, InMemoryTokenStore(auth), client_id="", client_secret="",
                      session=current_app.extensions.get("b24_session"))
    try:
        probe.call("app.info")
        return True
    except B24Error as exc:
        log.warning("portal %s: token check failed (%s)", portal.member_id, exc.code)
        return False


def store_portal(auth: InboundAuth, portal: Portal | None) -> Portal:
    now = int(utcnow().timestamp())
    fields = {"domain": auth.domain or None, "client_endpoint": auth.client_endpoint,
              "application_token": auth.application_token, "status": "active",
              "updated_at": utcnow()}
    if auth.access_token:
        fields.update(access_token=auth.access_token, token_expires_at=auth.expires_at(now))
    if auth.refresh_token:
        fields["refresh_token"] = auth.refresh_token
    if portal is None:
        return Portal.create(member_id=auth.member_id, timezone=current_app.config["TIMEZONE"],
                             **fields)
    Portal.update(**fields).where(Portal.id == portal.id).execute()
    return Portal.get_by_id(portal.id)


@bp.route("/install", methods=["POST"])
def install():
    req = parse_install(request.form, request.args)
    portal = Portal.get_or_none(Portal.member_id == req.auth.member_id)
    if portal and portal.client_endpoint and not token_matches(portal, req.auth.application_token) \
            and not genuine(portal, req.auth.access_token):
        return _denied()
    portal = store_portal(req.auth, portal)
    report, failure = None, None
    try:
        report = register(client_for(portal, settings(), current_app.extensions.get("b24_session")),
                          settings(), req.auth.user_id)
        Portal.update(installed_by_user_id=report.user_id).where(Portal.id == portal.id).execute()
    except B24Error as exc:
        failure = f"{exc.code}: {exc.description}"
    # Finished once the activities are in; refused optional writes are shown (and repaired later).
    ok = report is not None and report.activities_ok
    log.info("install on %s: %s", portal.member_id, report.summary() if report else failure)
    if req.is_frame:
        return render_template("b24/install.html", ok=ok, report=report, failure=failure,
                               lang=request.args.get("LANG", "ru"))
    return jsonify({"installed": ok, "summary": report.summary() if report else None,
                    "errors": (report.errors if report else {"install": failure})})


@bp.route("/events", methods=["POST"])
def events():
    event = parse_event(request.form)
    name = event.event.upper()
    portal = Portal.get_or_none(Portal.member_id == event.auth.member_id)
    if name == "ONAPPINSTALL":
        if portal and portal.application_token \
                and not token_matches(portal, event.auth.application_token) \
                and not genuine(portal, event.auth.access_token):
            return _denied()
        store_portal(event.auth, portal)
        return jsonify({"status": "ok"})
    if not token_matches(portal, event.auth.application_token):
        return _denied()
    if name == "ONAPPUNINSTALL":
        # API access is already revoked; the ledger stays: it is a financial record.
        Portal.update(status="uninstalled", access_token=None, refresh_token=None,
                      updated_at=utcnow()).where(Portal.id == portal.id).execute()
    elif name in ENTITY_EVENTS:
        entity = (event.data.get("FIELDS") or {}).get("ID")
        if entity and str(entity).isdigit():
            B24Event.create(portal=portal, event=name, entity_id=int(entity))
    return jsonify({"status": "ok"})


@bp.route("/activities/<code>", methods=["POST"])
def activity(code: str):
    call = parse_workflow_call(request.form)
    portal = Portal.get_or_none(Portal.member_id == call.auth.member_id)
    if not token_matches(portal, call.auth.application_token) or portal.status == "uninstalled":
        return _denied()
    token_hash = hashlib.sha256(call.event_token.encode()).hexdigest()
    inserted = ActivityRun.insert(
        portal=portal, token_hash=token_hash, event_token=call.event_token, code=code[:128],
        workflow_id=call.workflow_id[:64] or None, document_id=json.dumps(list(call.document_id)),
        properties=json.dumps(_plain(call.properties), ensure_ascii=False), user_id=call.auth.user_id,
    ).on_conflict_ignore().execute()
    if inserted:
        current_app.extensions["worker"].kick()
    return jsonify({"status": "queued"})
