"""Notifications (admins): UniSender keys (masked, replace only), senders, the Go host,
which notices are on; each template with a live preview and a test sent to oneself;
the log of every message, filterable."""
from __future__ import annotations

import uuid

from flask import current_app, g, jsonify, request

from api.db import db
from api.documents import VersionConflict, read_versioned
from api.ledger.errors import InvalidInput
from api.models import Notification, NotificationSettings
from background.outbox import enqueue
from notifications import notices
from notifications import settings as settings_mod
from notifications.templates import (DEFAULT_TEMPLATES, PLACEHOLDERS, SAMPLE_CONTEXT,
                                     NoticeTemplate, TemplateError, render_notice)
from pages import roles, web
from pages.frame import viewer_required
from pages.testsend import recipient_for_test

bp = web.blueprint("pages_notices", __name__, url_prefix="/b24/app/notifications")
LOG_PAGE = 50
STATUSES = ("pending", "sending", "sent", "failed", "unknown")
CHANNELS = ("email", "sms", "chat")
LABELS = {
    "accrual_sms": "Начисление: SMS клиенту", "accrual_email": "Начисление: письмо клиенту",
    "accrual_manager": "Начисление: менеджеру", "debit_sms": "Списание: SMS клиенту",
    "debit_email": "Списание: письмо клиенту",
    "missing_email_manager": "Нет e-mail клиента: менеджеру",
    "card_refused_manager": "Карта не выпущена: менеджеру",
    "birthday_email": "День рождения: письмо клиенту",
    "birthday_manager": "День рождения: менеджеру",
    "birthday_no_card_manager": "День рождения клиента без карты: менеджеру",
    "no_birthdate_manager": "Нет даты рождения: менеджеру",
    "expiry_warning_sms": "Бонусы сгорают: SMS клиенту",
    "expiry_warning_email": "Бонусы сгорают: письмо клиенту",
    "tier_up_sms": "Новый уровень: SMS клиенту", "tier_up_email": "Новый уровень: письмо клиенту",
    "login_code_sms": "Код входа в личный кабинет: SMS клиенту",
}


@bp.route("", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def show():
    document, version = read_versioned(NotificationSettings, g.portal,
                                       lambda: settings_mod.load(g.portal))
    shown = settings_mod.masked(document)
    return _settings_page(shown, shown, {}, version=version)


@bp.route("", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def save():
    form = request.form
    changes = {k: web.form_text(k, 200) for k in ("go_host", "sender_name", "chat_method")}
    changes.update({k: web.form_text(k, 254) or None for k in ("sender_email", "sms_sender")})
    changes["notices"] = {name: name in form.getlist("notices") for name in settings_mod.NOTICES}
    for key in settings_mod.SECRET_FIELDS:  # blank keeps the stored key: keys are never shown
        if web.form_text(key, 200):
            changes[key] = web.form_text(key, 200)
    version = web.form_version()
    try:
        with db.atomic():
            settings_mod.save(g.portal, changes, actor=g.viewer.actor, expected_version=version)
    except (InvalidInput, VersionConflict) as exc:
        shown = settings_mod.masked(settings_mod.load(g.portal))
        typed = {**shown, **{k: v for k, v in changes.items()
                             if k not in settings_mod.SECRET_FIELDS}}
        if isinstance(exc, VersionConflict):  # typed values kept, under the new version
            return _settings_page(shown, typed, {"_schema": web.STALE_FORM}, 409,
                                  version=exc.details["current_version"])
        return _settings_page(shown, typed, exc.fields, 422, version=version)
    return web.redirect_to("pages_notices.show", "settings_saved")


def _settings_page(shown: dict, values: dict, errors: dict, status: int = 200, *,
                   version: str | None = None):
    return web.render("notices.html", status, shown=shown, values=values, errors=errors,
                      labels=LABELS, defaults=DEFAULT_TEMPLATES, version=version)


@bp.route("/templates/<name>", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def edit(name):
    current = _template(name, request.args.get("default") == "1")
    return _editor(name, current, {})


@bp.route("/templates/<name>", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def save_template(name):
    typed = _typed(name)
    if request.form.get("action") == "preview":  # the no-JS preview: render, save nothing
        return _editor(name, typed, {})
    body = {"body": typed.body, "subject": typed.subject if typed.channel == "email" else None}
    try:
        with db.atomic():
            settings_mod.save(g.portal, {"templates": {name: body}}, actor=g.viewer.actor)
    except InvalidInput as exc:
        prefix = f"templates.{name}."
        return _editor(name, typed, {k.removeprefix(prefix): v for k, v in exc.fields.items()},
                       422)
    return web.redirect_to("pages_notices.edit", "template_saved", name=name)


@bp.route("/templates/<name>/preview", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def preview(name):
    """The live preview's fetch call: the typed template on the sample client."""
    typed = _typed(name)
    rendered, error = _render(typed)
    return jsonify({"subject": rendered.subject if rendered else None,
                    "body": rendered.body if rendered else None, "error": error,
                    "html": typed.kind == "html"})


@bp.route("/templates/<name>/test", methods=["POST"])
@viewer_required
@roles.require(roles.MANAGE)
def send_test(name):
    typed = _typed(name)
    rendered, error = _render(typed)
    recipient, problem = recipient_for_test(typed.channel, request.form, g.viewer)
    errors = {k: v for k, v in (("body", error), ("recipient", problem)) if v}
    if errors:
        return _editor(name, typed, errors, 422)
    key = f"test:{name}:{web.form_text('key', 64) or uuid.uuid4().hex}"
    with db.atomic():
        row = notices.insert(g.portal, None, key, typed.channel, name, recipient,
                             rendered.subject, rendered.body)
        call = notices.chat_call(row, settings_mod.load(g.portal))
        if call:  # a chat notice goes through the Bitrix24 outbox like any other
            enqueue(g.portal, key, dict([call]))
    current_app.extensions["worker"].kick()
    return web.redirect_to("pages_notices.edit", "test_queued", name=name)


def _template(name: str, default: bool = False) -> NoticeTemplate:
    if name not in DEFAULT_TEMPLATES:
        raise web.not_found("Нет такого шаблона.")
    if default:
        return DEFAULT_TEMPLATES[name]
    return settings_mod.template(settings_mod.load(g.portal), name)


def _typed(name: str) -> NoticeTemplate:
    base = _template(name, True)
    subject = web.form_text("subject", 500) if base.channel == "email" else None
    return NoticeTemplate(base.channel, request.form.get("body", "")[:20_000], subject)


def _render(template: NoticeTemplate):
    try:
        return render_notice(template, SAMPLE_CONTEXT), None
    except TemplateError as exc:
        return None, exc.message


def _editor(name: str, template: NoticeTemplate, errors: dict, status: int = 200):
    rendered, error = _render(template)
    if error and "body" not in errors:
        errors = {**errors, "preview": error}
    return web.render("template.html", status, name=name, label=LABELS.get(name, name),
                      template=template, rendered=rendered, errors=errors,
                      placeholders=PLACEHOLDERS, key=uuid.uuid4().hex)


@bp.route("/log", methods=["GET"])
@viewer_required
@roles.require(roles.MANAGE)
def log():
    args = request.args
    chosen = {"status": args.get("status") if args.get("status") in STATUSES else "",
              "channel": args.get("channel") if args.get("channel") in CHANNELS else "",
              "template": args.get("template") if args.get("template") in LABELS else ""}
    page = max(1, min(int(args["page"]) if args.get("page", "").isdigit() else 1, 10_000))
    rows = Notification.select().where(Notification.portal == g.portal)
    for field, value in chosen.items():
        if value:
            rows = rows.where(getattr(Notification, field) == value)
    rows = list(rows.order_by(Notification.id.desc()).offset((page - 1) * LOG_PAGE)
                .limit(LOG_PAGE + 1))
    return web.render("log.html", rows=rows[:LOG_PAGE], more=len(rows) > LOG_PAGE, page=page,
                      chosen=chosen, statuses=STATUSES, channels=CHANNELS, labels=LABELS)
