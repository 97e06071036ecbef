"""Exact money: integer kopecks inside, "1500.50" strings at the edges."""
from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

KOP_PER_RUB = 100
MAX_AMOUNT_KOP = 100_000_000_000  # a billion roubles: far beyond any real order
# Plain decimal notation, ASCII digits only: "1e3" or "١٢٣" in a money field is a mistake.
DECIMAL_TEXT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")
ROUNDING = {"down": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "up": ROUND_CEILING}


class MoneyError(ValueError):
    pass


def to_decimal(value) -> Decimal:
    """Accept an int, a decimal string or a JSON float; never compute in float."""
    if isinstance(value, bool):
        raise MoneyError("Ожидается число.")
    if isinstance(value, float):
        value = repr(value)  # the shortest repr is the literal the client wrote
    if isinstance(value, str):
        value = value.strip().replace(" ", "").replace("\u00a0", "").replace(",", ".")
        if not DECIMAL_TEXT.fullmatch(value):
            raise MoneyError("Ожидается число вида 1500.50.")
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise MoneyError("Ожидается число.") from None
    if not number.is_finite():
        raise MoneyError("Ожидается конечное число.")
    return number


def parse_kop(value, *, allow_zero=False, allow_negative=False) -> int:
    number = to_decimal(value)
    if abs(number) * KOP_PER_RUB > MAX_AMOUNT_KOP:
        raise MoneyError("Слишком большая сумма.")
    scaled = number * KOP_PER_RUB
    if scaled != scaled.to_integral_value():
        raise MoneyError("Не больше двух знаков после запятой.")
    kop = int(scaled)
    if kop < 0 and not allow_negative:
        raise MoneyError("Сумма не может быть отрицательной.")
    if kop == 0 and not allow_zero:
        raise MoneyError("Сумма должна быть больше нуля.")
    return kop


def format_kop(kop: int) -> str:
    sign = "-" if kop < 0 else ""
    rub, rest = divmod(abs(kop), KOP_PER_RUB)
    return f"{sign}{rub}.{rest:02d}"


def percent_of(amount_kop: int, percent: Decimal, *, mode: str, step_kop: int) -> int:
    """amount × percent / 100, rounded to a multiple of step_kop in the given direction."""
    exact = Decimal(amount_kop) * percent / 100 / step_kop
    return int(exact.to_integral_value(rounding=ROUNDING[mode])) * step_kop
