"""Program rules per portal: tiers, rounding, lifetime, limits, bonuses, required fields.

Stored as the JSON the API shows; loaded into a frozen Rules the operations read.
An operation reads the rules current when it runs, so a change never rewrites past entries.
Each load reads the stored text; validating it is done once per distinct text (PARSED).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api import documents, versions
from api.ledger import sql
from api.ledger.fields import Money, Percent
from api.ledger.text import NoControl
from api.models import Portal, ProgramRules

CARD_FIELDS = ("last_name", "first_name", "middle_name", "phone", "client_category",
               "email", "birthdate")
TIERS_MAX = 20
MAX_BONUS_KOP = 100_000_000  # a million bonuses as a welcome gift is surely a typo

DEFAULTS = {
    "tiers": [
        {"name": "Базовый", "threshold": "0.00", "percent": "3.00"},
        {"name": "Серебряный", "threshold": "50000.00", "percent": "5.00"},
        {"name": "Золотой", "threshold": "150000.00", "percent": "7.00"},
    ],
    "rounding_mode": "down",
    "rounding_unit": "bonus",
    "bonus_lifetime_days": 365,
    "max_debit_share_percent": "100.00",
    "welcome_bonus": "0.00",
    "birthday_bonus": "0.00",
    "required_fields": ["last_name", "first_name", "phone", "client_category"],
    "client_category_field": None,
}


class TierSchema(Schema):
    # A NUL here once broke every later card of the portal (PostgreSQL refuses it in text).
    name = fields.String(required=True, validate=[validate.Length(1, 64), NoControl()])
    threshold = Money(required=True, allow_zero=True)
    percent = Percent(required=True)


class RulesSchema(Schema):
    tiers = fields.List(fields.Nested(TierSchema), required=True,
                        validate=validate.Length(1, TIERS_MAX))
    rounding_mode = fields.String(required=True, validate=validate.OneOf(["down", "half_up", "up"]))
    rounding_unit = fields.String(required=True, validate=validate.OneOf(["bonus", "kopeck"]))
    bonus_lifetime_days = fields.Integer(required=True, strict=True,
                                         validate=validate.Range(1, 3650))
    max_debit_share_percent = Percent(required=True)
    welcome_bonus = Money(required=True, allow_zero=True, max_kop=MAX_BONUS_KOP)
    birthday_bonus = Money(required=True, allow_zero=True, max_kop=MAX_BONUS_KOP)
    required_fields = fields.List(fields.String(validate=validate.OneOf(CARD_FIELDS)),
                                  required=True, validate=validate.Length(max=len(CARD_FIELDS)))
    client_category_field = fields.String(
        required=True, allow_none=True,
        validate=validate.Regexp(r"^[A-Za-z0-9_]{1,64}$", error="Код поля: латиница, цифры, _."))

    @validates_schema
    def _tiers_ascend(self, data, **kw):
        tiers = data.get("tiers") or []
        if tiers and tiers[0]["threshold"] != 0:
            raise ValidationError({"tiers": ["Первый уровень должен начинаться с 0."]})
        thresholds = [t["threshold"] for t in tiers]
        if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
            raise ValidationError({"tiers": ["Пороги уровней должны строго возрастать."]})
        names = [t["name"] for t in tiers]
        if len(set(names)) != len(names):
            raise ValidationError({"tiers": ["Названия уровней не должны повторяться."]})


@dataclass(frozen=True)
class Tier:
    name: str
    threshold_kop: int
    percent: Decimal


@dataclass(frozen=True)
class Rules:
    tiers: tuple[Tier, ...]
    rounding_mode: str
    rounding_step_kop: int
    bonus_lifetime_days: int
    max_debit_share_percent: Decimal
    welcome_bonus_kop: int
    birthday_bonus_kop: int
    required_fields: tuple[str, ...]
    client_category_field: str | None

    def tier_for(self, purchases_kop: int) -> Tier:
        reached = [t for t in self.tiers if t.threshold_kop <= purchases_kop]
        return reached[-1] if reached else self.tiers[0]

    def next_tier(self, purchases_kop: int) -> Tier | None:
        ahead = [t for t in self.tiers if t.threshold_kop > purchases_kop]
        return ahead[0] if ahead else None


SCHEMA = RulesSchema()


def from_loaded(data: dict) -> Rules:
    return Rules(
        tiers=tuple(Tier(t["name"], t["threshold"], t["percent"]) for t in data["tiers"]),
        rounding_mode=data["rounding_mode"],
        rounding_step_kop=100 if data["rounding_unit"] == "bonus" else 1,
        bonus_lifetime_days=data["bonus_lifetime_days"],
        max_debit_share_percent=data["max_debit_share_percent"],
        welcome_bonus_kop=data["welcome_bonus"],
        birthday_bonus_kop=data["birthday_bonus"],
        required_fields=tuple(dict.fromkeys(["phone", *data["required_fields"]])),
        client_category_field=data["client_category_field"],
    )


def stored_document(portal: Portal) -> dict:
    """The rules as the API shows them; defaults until an admin saves some."""
    row = ProgramRules.get_or_none(ProgramRules.portal == portal)
    return json.loads(row.data) if row else json.loads(json.dumps(DEFAULTS))


# Stored JSON text (None: no row, the defaults) → its Rules. Rules are immutable, so
# every operation can share one; a saved change is new text, hence parsed anew.
PARSED: dict[str | None, Rules] = {}
PARSED_MAX = 256  # distinct texts kept; past that the cache starts over


def parse(text: str | None) -> Rules:
    """The Rules of a stored document (validated as on load), parsed once per text."""
    rules = PARSED.get(text)
    if rules is None:
        document = json.loads(text) if text is not None else json.loads(json.dumps(DEFAULTS))
        rules = from_loaded(SCHEMA.load(document))
        if len(PARSED) >= PARSED_MAX:
            PARSED.clear()
        PARSED[text] = rules
    return rules


def load(portal: Portal) -> Rules:
    """The portal's rules as stored right now (read on every call, parsed once per text)."""
    row = sql.row("rules_data", sql.pk(portal))
    return parse(row[0] if row else None)


def for_card(card) -> Rules:
    """The rules of the card's portal, cached under the settings token read with the card
    (api.versions); a card read without one loads them."""
    return versions.cached("rules", card.portal_id,
                           getattr(card, "settings_token", versions.UNKNOWN),
                           lambda: load(card.portal_id))


def validate_document(document: dict) -> dict:
    """Validate a whole rules document; InvalidInput names the fields."""
    return documents.validated(SCHEMA, document)


def save(portal: Portal, changes: dict, actor: str, expected_version: str | None = None) -> dict:
    """Replace the given keys; the rest keep their value. Returns the stored document.
    Read and written under the portal's lock (api.documents.save): nothing is lost;
    with expected_version, a save made since that version was read is VersionConflict."""
    documents.check_keys(changes, DEFAULTS)
    return documents.save(
        ProgramRules, portal, lambda: SCHEMA.dump(validate_document(
            {**stored_document(portal), **changes})), actor, expected_version)


def versioned(portal: Portal) -> tuple[dict, str]:
    """The stored document and its version (the API's ETag), read together."""
    return documents.read_versioned(ProgramRules, portal, lambda: stored_document(portal))
