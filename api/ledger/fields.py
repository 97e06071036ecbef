"""Marshmallow fields for exact money and percents, shared by the rules and the API."""
from __future__ import annotations

from decimal import Decimal

from marshmallow import ValidationError, fields

from api.ledger.money import MoneyError, format_kop, parse_kop, to_decimal


class Money(fields.Field):
    """Roubles at the edge ("1500.50", 1500.5, 1500), integer kopecks inside."""

    def __init__(self, *, allow_zero=False, allow_negative=False, max_kop=None, **kw):
        super().__init__(**kw)
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative
        self.max_kop = max_kop

    def _serialize(self, value, attr, obj, **kw):
        return None if value is None else format_kop(value)

    def _deserialize(self, value, attr, data, **kw):
        try:
            kop = parse_kop(value, allow_zero=self.allow_zero, allow_negative=self.allow_negative)
        except MoneyError as exc:
            raise ValidationError(str(exc)) from None
        if self.max_kop is not None and abs(kop) > self.max_kop:
            raise ValidationError(f"Не больше {format_kop(self.max_kop)}.")
        return kop


class Percent(fields.Field):
    """0–100 with at most two decimals, kept as Decimal."""

    def _serialize(self, value, attr, obj, **kw):
        return None if value is None else f"{Decimal(value):.2f}"

    def _deserialize(self, value, attr, data, **kw):
        try:
            number = to_decimal(value)
        except MoneyError:
            raise ValidationError("Ожидается число от 0 до 100.") from None
        if not 0 <= number <= 100:
            raise ValidationError("Процент должен быть от 0 до 100.")
        if number != number.quantize(Decimal("0.01")):
            raise ValidationError("Не больше двух знаков после запятой.")
        return number.quantize(Decimal("0.01"))
