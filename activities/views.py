"""Where Bitrix24 calls us: the install URL, event handlers, and activity handlers."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping

from flask import Blueprint, current_app, jsonify, render_template, request

from activities.b24client import B24Error
from activities.forms import FormError, InboundAuth, parse_event, parse_install, parse_workflow_call
from activities import public_url
from activities.portals import B24Settings, adopt_tokens, client_for
from activities.proof import Proof, ProofError, prove_token, require_admin
from activities.registration import register
from api.clock import utcnow
from api.db import db
from api.models import ActivityRun, B24Event, Portal

log = logging.getLogger(__name__)
bp = Blueprint("b24", __name__, url_prefix="/b24", template_folder="templates")
ENTITY_EVENTS = ("ONCRMCONTACTUPDATE",)  # ONCRMDEALUPDATE is no longer bound: nobody read it
TOKEN_SLACK_S = 60  # a stored access token this close to its end counts as spent


@bp.errorhandler(FormError)
def _bad_form(exc: FormError):
    return jsonify({"error": {"code": "bad_request", "message": exc.message,
                              "fields": {exc.field: exc.message}}}), 400


@bp.errorhandler(ProofError)
def _not_proven(exc: ProofError):
    return jsonify({"error": {"code": exc.code, "message": exc.message, "fields": {}}}), exc.status


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


def admit(auth: InboundAuth, domain: str | None) -> tuple[Portal | None, Proof]:
    """May this install (frame, callback or ONAPPINSTALL) bind the app? ProofError if not.

    First the cheap local check, so a forgery costs the real portal nothing: a portal that
    is installed keeps its application_token, full stop. Then the OAuth server of the
    request's server_endpoint (allow-listed) must vouch for the token, and its user must be
    an admin (activities/proof.py). Nothing is called at a host the request named.
    """
    portal = Portal.get_or_none(Portal.member_id == auth.member_id)
    if portal is not None and portal.status == "active" and portal.application_token \
            and not token_matches(portal, auth.application_token):
        raise ProofError(401, "unauthorized", "Неверный application_token")
    found = B24Settings.from_config(current_app.config)  # the proof needs no public URL
    session = current_app.extensions.get("b24_session")
    proof = prove_token(auth.access_token, auth.member_id, domain, auth.server_endpoint,
                        found.client_id, found.oauth_url, session)
    require_admin(proof, auth.access_token or "", session)
    return portal, proof


def store_portal(auth: InboundAuth, portal: Portal | None, proof: Proof) -> Portal:
    """Keep what the OAuth server vouched for (endpoint, domain), never the form's."""
    now = int(utcnow().timestamp())
    fields = {"domain": proof.domain, "client_endpoint": proof.client_endpoint,
              "server_endpoint": proof.server_endpoint,
              "application_token": auth.application_token, "status": "active",
              "installed_by_user_id": proof.user_id, "updated_at": utcnow()}
    if auth.access_token:
        fields.update(access_token=auth.access_token, token_expires_at=auth.expires_at(now))
    if auth.refresh_token:
        fields["refresh_token"] = auth.refresh_token
    with db.atomic():
        if portal is None:
            return Portal.create(member_id=auth.member_id,
                                 timezone=current_app.config["TIMEZONE"], **fields)
        Portal.update(**fields).where(Portal.id == portal.id).execute()
    return Portal.get_by_id(portal.id)


def heal_tokens(portal: Portal, auth: InboundAuth) -> None:
    """A call run as the installing admin brings fresh tokens: when the stored pair is past
    its life (a dead refresh token, say), keep these, once the OAuth server vouches for them.
    Only then, so a forger who knows the application_token cannot plant a token of theirs,
    and an OAuth request is spent at most about once an hour per portal."""
    now = int(utcnow().timestamp())
    if (portal.token_expires_at or 0) > now + TOKEN_SLACK_S or not auth.refresh_token \
            or not auth.user_id or auth.user_id != portal.installed_by_user_id:
        return
    found = B24Settings.from_config(current_app.config)
    try:
        proof = prove_token(auth.access_token, portal.member_id, None, portal.server_endpoint,
                            found.client_id, found.oauth_url,
                            current_app.extensions.get("b24_session"))
    except ProofError as exc:
        log.info("portal %s: tokens of a call not adopted (%s)", portal.member_id, exc.code)
        return
    if proof.user_id == auth.user_id and adopt_tokens(
            portal, proof.user_id, auth.access_token, auth.refresh_token, auth.expires_at(now)):
        log.info("portal %s: stored tokens renewed from a call of the installer",
                 portal.member_id)


@bp.route("/install", methods=["POST"])
def install():
    req = parse_install(request.form, request.args)
    try:
        portal, proof = admit(req.auth, req.auth.domain or None)
    except ProofError as exc:
        if not req.is_frame:
            raise
        # The admin is looking at this frame: a page that says why, without installFinish.
        log.info("install refused in the frame: %s", exc.code)
        return render_template("b24/install.html", ok=False, report=None, failure=exc.message,
                               refused=exc.code, lang=request.args.get("LANG", "ru")), exc.status
    portal = store_portal(req.auth, portal, proof)
    report, failure = None, None
    try:
        report = register(client_for(portal, settings(), current_app.extensions.get("b24_session")),
                          settings(), proof.user_id)
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
        portal, proof = admit(event.auth, event.auth.domain or None)
        store_portal(event.auth, portal, proof)
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
    if not token_matches(portal, call.auth.application_token) or portal.status != "active":
        return _denied()
    heal_tokens(portal, call.auth)
    token_hash = hashlib.sha256(call.event_token.encode()).hexdigest()
    inserted = ActivityRun.insert(
        portal=portal, token_hash=token_hash, event_token=call.event_token, code=code[:128],
        workflow_id=call.workflow_id[:64] or None, document_id=json.dumps(list(call.document_id)),
        properties=json.dumps(_plain(call.properties), ensure_ascii=False), user_id=call.auth.user_id,
    ).on_conflict_ignore().execute()
    if inserted:
        current_app.extensions["worker"].kick()
    return jsonify({"status": "queued"})
