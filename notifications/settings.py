"""Per-portal notification settings: provider keys, senders, which notices are on,
and template overrides. Keys are stored for sending but shown only masked."""
from __future__ import annotations

import json

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api import documents
from api.models import NotificationSettings, Portal
from notifications.templates import DEFAULT_TEMPLATES, TemplateError, check

SECRET_FIELDS = ("unisender_api_key", "go_api_key")
MASK = "••••"
NOTICES = tuple(DEFAULT_TEMPLATES)

DEFAULTS = {
    "unisender_api_key": None,
    "go_api_key": None,
    "go_host": "go1",
    "sender_email": None,
    "sender_name": "Программа лояльности",
    "sms_sender": None,
    "chat_method": "notify",  # notices.CHAT_METHODS: im.notify.system.add, from the app
    "expiry_warning_days": 30,  # clients hear this many days before bonuses expire
    "timeline": True,  # every movement on the contact's CRM timeline
    "notices": {name: True for name in NOTICES},
    "templates": {},
}


# A registered alpha name (unisender.md, sendSms §2): 3 to 11 Latin letters or digits, "."
# and "-" only inside, at least one letter; anything else fails every SMS (err_src_invalid).
SMS_SENDER_RE = r"^(?=.*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9.\-]{1,9})[A-Za-z0-9]$"


class TemplateSchema(Schema):
    subject = fields.String(allow_none=True, validate=validate.Length(max=500))
    body = fields.String(required=True, validate=validate.Length(1, 20_000))


class SettingsSchema(Schema):
    unisender_api_key = fields.String(allow_none=True, validate=validate.Length(max=200))
    go_api_key = fields.String(allow_none=True, validate=validate.Length(max=200))
    go_host = fields.String(validate=validate.OneOf(["go1", "go2"]))
    sender_email = fields.Email(allow_none=True)
    sender_name = fields.String(validate=validate.Length(1, 100))
    sms_sender = fields.String(allow_none=True, validate=validate.Regexp(
        SMS_SENDER_RE, error="Имя отправителя SMS: от 3 до 11 латинских букв и цифр (можно . и - "
                             "внутри), зарегистрированное в UniSender."))
    chat_method = fields.String(validate=validate.OneOf(["notify", "personal", "message"]))
    expiry_warning_days = fields.Integer(strict=True, validate=validate.Range(1, 365))
    timeline = fields.Boolean(truthy={True}, falsy={False})
    notices = fields.Dict(keys=fields.String(validate=validate.OneOf(NOTICES)),
                          values=fields.Boolean(truthy={True}, falsy={False}))
    templates = fields.Dict(keys=fields.String(validate=validate.OneOf(NOTICES)),
                            values=fields.Nested(TemplateSchema))

    @validates_schema
    def _templates_render(self, data, **kw):
        problems = {}
        for name, template in (data.get("templates") or {}).items():
            kind = "html" if DEFAULT_TEMPLATES[name].channel == "email" else "text"
            for part in ("subject", "body"):
                try:
                    if template.get(part):
                        check(template[part], kind="text" if part == "subject" else kind)
                except TemplateError as exc:
                    problems.setdefault(name, {})[part] = [exc.message]
        if problems:
            raise ValidationError({"templates": problems})


SCHEMA = SettingsSchema()


def load(portal: Portal) -> dict:
    """The full settings, keys in clear: for sending only, never for showing."""
    row = NotificationSettings.get_or_none(NotificationSettings.portal == portal)
    stored = json.loads(row.data) if row else {}
    merged = {**json.loads(json.dumps(DEFAULTS)), **stored}
    merged["notices"] = {**DEFAULTS["notices"], **stored.get("notices", {})}
    return merged


def masked(settings: dict) -> dict:
    shown = dict(settings)
    for name in SECRET_FIELDS:
        value = settings.get(name)
        shown[name] = f"{MASK}{value[-4:]}" if value else None
    return shown


def save(portal: Portal, changes: dict, actor: str, expected_version: str | None = None) -> dict:
    """Apply the given keys; a masked key sent back unchanged keeps the stored one.
    Merged and written under the portal's lock (api.documents.save): nothing is lost."""
    documents.check_keys(changes, DEFAULTS)
    changes = {k: v for k, v in changes.items()
               if not (k in SECRET_FIELDS and isinstance(v, str) and v.startswith(MASK))}
    valid = documents.validated(SCHEMA, changes, partial=True)

    def merged() -> dict:
        current = load(portal)
        return {**current, **valid, "notices": {**current["notices"], **valid.get("notices", {})},
                "templates": {**current["templates"], **valid.get("templates", {})}}

    return documents.save(NotificationSettings, portal, merged, actor, expected_version)


def template(settings: dict, name: str):
    """The portal's template for a notice, or the default."""
    from notifications.templates import NoticeTemplate

    default = DEFAULT_TEMPLATES[name]
    override = settings["templates"].get(name)
    if not override:
        return default
    return NoticeTemplate(default.channel, override["body"], override.get("subject") or default.subject)
