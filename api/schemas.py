"""What the REST API accepts and answers. Money is roubles as strings ("1500.50")."""
from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from api.ledger.fields import Money, Percent
from api.ledger.operations import COMMENT_MAX_LEN, KINDS, REFERENCE_MAX_LEN

Name = lambda: fields.String(validate=validate.Length(max=100), allow_none=True)  # noqa: E731
Reference = lambda **kw: fields.String(  # noqa: E731
    validate=validate.Length(1, REFERENCE_MAX_LEN), **kw)
Comment = lambda **kw: fields.String(validate=validate.Length(1, COMMENT_MAX_LEN), **kw)  # noqa: E731


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class CardCreate(StrictSchema):
    phone = fields.String(required=True, validate=validate.Length(1, 40))
    last_name = Name()
    first_name = Name()
    middle_name = Name()
    client_category = Name()
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    birthdate = fields.Date(allow_none=True)
    contact_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 2**53))
    manager_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 2**31))


class NextTier(Schema):
    name = fields.String()
    threshold = Money(attribute="threshold_kop")
    remaining = Money(attribute="remaining_kop")


class Card(Schema):
    number = fields.String()
    contact_id = fields.Integer(allow_none=True)
    last_name = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    middle_name = fields.String(allow_none=True)
    client_category = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    birthdate = fields.Date(allow_none=True)
    manager_id = fields.Integer(allow_none=True)
    status = fields.String()
    tier = fields.String()
    balance = Money(attribute="balance_kop")
    held = Money(attribute="held_kop", metadata={"description": "Reserved by active holds."})
    available = Money(attribute="available_kop", metadata={"description": "Balance minus holds."})
    purchases = Money(attribute="purchases_kop")
    next_tier = fields.Nested(NextTier, allow_none=True)
    created = fields.Boolean(metadata={"description": "True when this request issued the card."})
    created_at = fields.DateTime()


class CardQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    q = fields.String(validate=validate.Length(max=100))
    page = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class Lookup(Schema):
    class Meta:
        unknown = EXCLUDE

    phone = fields.String(validate=validate.Length(1, 40))
    number = fields.String(validate=validate.Length(1, 40))
    contact_id = fields.Integer(validate=validate.Range(1, 2**53))


class Page(Schema):
    page = fields.Integer()
    per_page = fields.Integer()
    has_more = fields.Boolean()


class CardPage(Page):
    items = fields.List(fields.Nested(Card))


class Accrual(StrictSchema):
    amount = Money(required=True, metadata={"description": "The purchase amount, roubles."})
    reference = Reference(metadata={"description": "Deal or order id: one accrual per reference."})
    comment = Comment()


class Debit(StrictSchema):
    amount = Money(required=True, metadata={"description": "Bonuses to spend (1 bonus = 1 ₽)."})
    reference = Reference()
    order_amount = Money(metadata={"description": "The order total: caps the bonus share."})
    partial = fields.Boolean(load_default=False,
                             metadata={"description": "Spend what is available if short."})
    comment = Comment()


class Reversal(StrictSchema):
    reference = Reference(required=True)
    comment = Comment()


class Adjustment(StrictSchema):
    amount = Money(required=True, allow_negative=True)
    reason = Comment(required=True)


class OperationResult(Schema):
    card_number = fields.String()
    kind = fields.String()
    entry_id = fields.Integer()
    entry_ids = fields.List(fields.Integer())
    amount = Money(attribute="amount_kop", allow_negative=True)
    balance = Money(attribute="balance_kop")
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
    created_at = fields.String()


class Entry(Schema):
    id = fields.Integer()
    kind = fields.String()
    amount = Money(attribute="amount_kop", allow_negative=True)
    balance_after = Money(attribute="balance_after_kop")
    reference = fields.String(allow_none=True)
    purchase = Money(attribute="purchase_kop", allow_none=True)
    percent = Percent(allow_none=True)
    reverses = fields.Integer(attribute="reverses_id", allow_none=True)
    actor = fields.String()
    comment = fields.String(allow_none=True)
    created_at = fields.DateTime()


class EntryQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    kind = fields.String(validate=validate.OneOf(KINDS))
    page = fields.Integer(load_default=1, validate=validate.Range(1, 100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 100))


class EntryPage(Page):
    items = fields.List(fields.Nested(Entry))
