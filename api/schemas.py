"""What the REST API accepts and answers. Money is roubles as strings ("1500.50").

Every text field refuses control characters (api.ledger.text); every integer is bounded
to its column (INT32 for IntegerField, 2**53 for ids a JavaScript client must hold
exactly); timestamps leave as ISO 8601 in UTC with the offset ("…+00:00").
"""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing, validate
from marshmallow.decorators import POST_DUMP, POST_LOAD, PRE_DUMP, PRE_LOAD, VALIDATES, \
    VALIDATES_SCHEMA

from api.ledger.fields import Money, Percent
from api.ledger.operations import COMMENT_MAX_LEN, KINDS, REFERENCE_MAX_LEN
from api.ledger.text import NoControl

INT32_MAX = 2**31 - 1  # PostgreSQL integer: manager_id, Bitrix24 user ids
ID_MAX = 2**53  # BIGINT columns, capped where JavaScript integers stay exact
PAGE_MAX = 100_000


def Line(low: int = 0, high: int = 100, **kw) -> fields.String:  # noqa: N802
    """One line of text: no control characters at all (no tabs or line breaks)."""
    return fields.String(validate=[validate.Length(low, high), NoControl()], **kw)


def Text(low: int = 1, high: int = COMMENT_MAX_LEN, **kw) -> fields.String:  # noqa: N802
    """Free text: line breaks and tabs allowed, other control characters not."""
    return fields.String(validate=[validate.Length(low, high), NoControl(multiline=True)], **kw)


def Name() -> fields.String:  # noqa: N802
    return Line(high=100, allow_none=True, metadata={"example": "Петрова"})


def Reference(**kw) -> fields.String:  # noqa: N802
    return Line(1, REFERENCE_MAX_LEN, **kw)


class UtcDateTime(fields.DateTime):
    """Stored naive in UTC; shown with its offset so no client guesses the zone."""

    def __init__(self, **kw):
        kw.setdefault("metadata", {}).setdefault("example", "2026-12-01T09:30:00+00:00")
        super().__init__(format="iso", **kw)

    def _serialize(self, value, attr, obj, **kw):
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return super()._serialize(value, attr, obj, **kw)


_ABSENT = object()


class Answer(Schema):
    """A schema the API answers with. The views hand it plain dicts: a key is read with
    dict.get, and one the dict lacks is looked for as an attribute as marshmallow's own
    accessor does, without the KeyError it raises and catches for every absent field
    (OperationResult: six of seventeen an accrual).

    `dump` of one plain dict goes straight to each field's formatting (`_serialize`, what
    a custom field defines): marshmallow's three calls a field around it were half of a
    card's dump. Only for what they would not change: no dump hooks, no default, no
    dotted or computed fields (`_plan`); anything else is marshmallow's own dump."""

    def get_attribute(self, obj, attr, default):
        if type(obj) is dict and "." not in attr:
            value = obj.get(attr, _ABSENT)
            return getattr(obj, attr, default) if value is _ABSENT else value
        return super().get_attribute(obj, attr, default)

    def dump(self, obj, *, many=None):
        plan = self.__dict__.get("_plan_cache", _ABSENT)
        if plan is _ABSENT:
            plan = self._plan_cache = self._plan()
        if plan is None or type(obj) is not dict or (self.many if many is None else many):
            return super().dump(obj, many=many)
        out = {}
        for key, source, name, serialize in plan:
            value = obj.get(source, _ABSENT)
            if value is _ABSENT:
                value = getattr(obj, source, missing)  # marshmallow's accessor, after KeyError
                if value is missing:
                    continue
            out[key] = serialize(value, name, obj)
        return out

    def _plan(self) -> list[tuple] | None:
        """(output key, dict key, field name, formatter) a field; None where marshmallow's
        own steps would do more than read the key and format the value."""
        if self._hooks[PRE_DUMP] or self._hooks[POST_DUMP] or self.dict_class is not dict:
            return None
        plan = []
        for name, field in self.dump_fields.items():
            source = name if field.attribute is None else field.attribute
            if not field._CHECK_ATTRIBUTE or "." in source or field.dump_default is not missing:
                return None
            plan.append((name if field.data_key is None else field.data_key, source, name,
                         field._serialize))
        return plan


class StrictSchema(Schema):
    """A request body: an unknown field is an error.

    `load` of a plain dict whose keys are all fields runs each field's own `deserialize`
    (its checks, defaults and validators) in marshmallow's order, without the error store,
    closures and schema passes around them (a third of an accrual's body parsing). The
    first ValidationError hands the body to marshmallow's own load, so every error, and
    anything `_load_plan` cannot vouch for, is marshmallow's."""

    class Meta:
        unknown = RAISE

    def load(self, data, *, many=None, partial=None, unknown=None):
        plan = self.__dict__.get("_load_plan_cache", _ABSENT)
        if plan is _ABSENT:
            plan = self._load_plan_cache = self._load_plan()
        if plan is not None and type(data) is dict and many is None and partial is None \
                and data.keys() <= plan[0]:
            try:
                return _load_fields(plan[1], data)
            except ValidationError:
                pass  # marshmallow's load says what is wrong, every field of it
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def _load_plan(self) -> tuple[frozenset, tuple] | None:
        """(the body's possible keys, (key, result key, deserialize) a field); None where
        marshmallow's load would do more than deserialize field by field."""
        if self.many or self.partial or self.dict_class is not dict or any(
                self._hooks[hook] for hook in (PRE_LOAD, POST_LOAD, VALIDATES, VALIDATES_SCHEMA)):
            return None
        plan = []
        for name, field in self.load_fields.items():
            key = name if field.data_key is None else field.data_key
            stored = field.attribute or name
            if "." in stored:
                return None
            plan.append((key, stored, field.deserialize))
        return frozenset(key for key, _, _ in plan), tuple(plan)


def _load_fields(plan: tuple, data: dict) -> dict:
    """Schema._deserialize for a body that raises nothing: an absent key is `missing`
    to the field (required, or its load_default), a `missing` result is left out."""
    out = {}
    for key, stored, deserialize in plan:
        value = deserialize(data.get(key, missing), key, data)
        if value is not missing:
            out[stored] = value
    return out


class ErrorBody(Schema):
    code = fields.String(required=True, metadata={
        "description": "Stable machine code; see each operation's responses for its codes.",
        "example": "validation_error"})
    message = fields.String(required=True, metadata={"example": "amount: Expected a number."})
    fields_ = fields.Dict(data_key="fields", required=True, keys=fields.String(),
                          values=fields.String(), metadata={
                              "description": "Field path → what is wrong with it.",
                              "example": {"amount": "Expected a number like 1500.50."}})
    details = fields.Dict(metadata={"description": "Extra facts for some codes, e.g. "
                                                   "`available` for insufficient_balance."})


class ErrorResponse(Schema):
    error = fields.Nested(ErrorBody, required=True)


class CardCreate(StrictSchema):
    phone = Line(1, 40, required=True, metadata={"example": "+7 916 123-45-67"})
    last_name = Name()
    first_name = Name()
    middle_name = Name()
    client_category = Name()
    email = fields.Email(allow_none=True, validate=[validate.Length(max=254), NoControl()])
    birthdate = fields.Date(allow_none=True, metadata={"example": "1990-05-17"})
    contact_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, ID_MAX),
                                metadata={"description": "Bitrix24 contact id."})
    manager_id = fields.Integer(strict=True, allow_none=True,
                                validate=validate.Range(1, INT32_MAX),
                                metadata={"description": "Bitrix24 user id of the manager."})


class NextTier(Answer):
    name = fields.String(required=True)
    threshold = Money(attribute="threshold_kop", required=True)
    remaining = Money(attribute="remaining_kop", required=True)


class Card(Answer):
    number = fields.String(required=True, metadata={"example": "79161234567"})
    contact_id = fields.Integer(allow_none=True, required=True)
    last_name = fields.String(allow_none=True, required=True)
    first_name = fields.String(allow_none=True, required=True)
    middle_name = fields.String(allow_none=True, required=True)
    client_category = fields.String(allow_none=True, required=True)
    email = fields.String(allow_none=True, required=True)
    birthdate = fields.Date(allow_none=True, required=True)
    manager_id = fields.Integer(allow_none=True, required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "blocked"]))
    tier = fields.String(required=True, metadata={"example": "Базовый"})
    balance = Money(attribute="balance_kop", required=True)
    held = Money(attribute="held_kop", metadata={
        "description": "Reserved by active holds (one card's answers, not lists)."})
    available = Money(attribute="available_kop", metadata={
        "description": "Balance minus active holds (one card's answers, not lists)."})
    purchases = Money(attribute="purchases_kop", required=True)
    next_tier = fields.Nested(NextTier, allow_none=True, required=True)
    created = fields.Boolean(required=True, metadata={
        "description": "True when this request issued the card; false otherwise."})
    created_at = UtcDateTime(required=True)


class CardQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    q = Line(high=100, metadata={"description": "Phone in any format, card number, name or "
                                                "e-mail."})
    page = fields.Integer(load_default=1, validate=validate.Range(1, PAGE_MAX))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class Lookup(Schema):
    class Meta:
        unknown = EXCLUDE

    phone = Line(1, 40)
    number = Line(1, 40)
    contact_id = fields.Integer(validate=validate.Range(1, ID_MAX))


class Page(Answer):
    page = fields.Integer(required=True)
    per_page = fields.Integer(required=True)
    has_more = fields.Boolean(required=True)


class CardPage(Page):
    items = fields.List(fields.Nested(Card), required=True)


class Accrual(StrictSchema):
    amount = Money(required=True, metadata={"description": "The purchase amount, roubles."})
    reference = Reference(metadata={"description": "Deal or order id: one accrual per reference."})
    comment = Text()


class Debit(StrictSchema):
    amount = Money(required=True, metadata={"description": "Bonuses to spend (1 bonus = 1 ₽)."})
    reference = Reference()
    order_amount = Money(metadata={"description": "The order total: caps the bonus share."})
    partial = fields.Boolean(load_default=False,
                             metadata={"description": "Spend what is available if short."})
    comment = Text()


class Reversal(StrictSchema):
    reference = Reference(required=True)
    comment = Text()


class Adjustment(StrictSchema):
    amount = Money(required=True, allow_negative=True,
                   metadata={"description": "Signed: -100 takes bonuses away."})
    reason = Text(required=True)


class OperationResult(Answer):
    card_number = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    entry_id = fields.Integer()
    entry_ids = fields.List(fields.Integer())
    amount = Money(attribute="amount_kop", allow_negative=True)
    balance = Money(attribute="balance_kop", required=True)
    tier = fields.String()
    tier_before = fields.String()
    reference = fields.String(allow_none=True)
    percent = Percent()
    purchase = Money(attribute="purchase_kop")
    requested = Money(attribute="requested_kop")
    debited = Money(attribute="debited_kop")
    returned_debit = Money(attribute="returned_debit_kop")
    reversed_accrual = Money(attribute="reversed_accrual_kop")
    unrecovered = Money(attribute="unrecovered_kop")
    created_at = UtcDateTime()


class Entry(Answer):
    id = fields.Integer(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    amount = Money(attribute="amount_kop", allow_negative=True, required=True)
    balance_after = Money(attribute="balance_after_kop", required=True)
    reference = fields.String(allow_none=True)
    purchase = Money(attribute="purchase_kop", allow_none=True)
    percent = Percent(allow_none=True)
    reverses = fields.Integer(attribute="reverses_id", allow_none=True)
    actor = fields.String()
    comment = fields.String(allow_none=True)
    created_at = UtcDateTime(required=True)


class EntryQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    kind = fields.String(validate=validate.OneOf(KINDS))
    page = fields.Integer(load_default=1, validate=validate.Range(1, PAGE_MAX))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class EntryPage(Page):
    items = fields.List(fields.Nested(Entry), required=True)


class Health(Answer):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "ok"})
