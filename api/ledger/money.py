"""Exact money: integer kopecks inside, "1500.50" strings at the edges."""
from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

KOP_PER_RUB = 100
MAX_AMOUNT_KOP = 100_000_000_000  # a billion roubles: far beyond any real order
# Accepted text: "1500", "1500.50", "1500,50", "1 500,50", "-0.50": ASCII digits, groups of
# three separated by spaces (also no-break spaces), one decimal point or comma, at most 15
# digits on either side. "1e3", "١٢٣" and "1.500,50" in a money field are mistakes.
DECIMAL_TEXT = re.compile(r"-?([0-9]{1,15}|[0-9]{1,3}( [0-9]{3}){1,4})([.,][0-9]{1,15})?")
# "1,500" is 1.50 to a Russian and 1500 to an American: a lone comma followed by exactly
# three digits is refused rather than guessed.
AMBIGUOUS_COMMA = re.compile(r"-?[0-9]{1,3},[0-9]{3}")
SPACES = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " "})
# A JSON number literal longer than this is refused before int() or Decimal() see it
# (int() gives up at 4,300 digits with a ValueError): no real amount or id is that long.
NUMBER_TEXT_MAX = 40
ROUNDING = {"down": ROUND_FLOOR, "half_up": ROUND_HALF_UP, "up": ROUND_CEILING}


class MoneyError(ValueError):
    pass


class OversizedNumber:
    """Stands for a JSON number literal longer than NUMBER_TEXT_MAX: every field refuses it
    by its type (it is neither int, float nor str), and money fields say why."""

    def __init__(self, text: str):
        self.length = len(text)

    def __repr__(self) -> str:
        return f"<number of {self.length} characters>"


def bounded_number(parse):
    """A json.loads parse_int/parse_float hook that refuses overlong literals unparsed."""
    return lambda text: OversizedNumber(text) if len(text) > NUMBER_TEXT_MAX else parse(text)


def to_decimal(value) -> Decimal:
    """Accept an int, a decimal string or a JSON float; never compute in float."""
    if isinstance(value, bool):
        raise MoneyError("Ожидается число.")
    if isinstance(value, OversizedNumber):
        raise MoneyError("Слишком длинное число.")
    if isinstance(value, float):
        value = repr(value)  # the shortest repr is the literal the client wrote
    if isinstance(value, str):
        value = _plain_decimal(value)
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise MoneyError("Ожидается число.") from None
    if not number.is_finite():
        raise MoneyError("Ожидается конечное число.")
    return number


def _plain_decimal(text: str) -> str:
    """"1 500,50" → "1500.50"; MoneyError for anything else than DECIMAL_TEXT."""
    text = text[:NUMBER_TEXT_MAX + 1].translate(SPACES).strip()
    if AMBIGUOUS_COMMA.fullmatch(text):
        raise MoneyError("Неоднозначная сумма: запятая перед тремя цифрами. "
                         "Пишите 1500 или 1500.00.")
    if not DECIMAL_TEXT.fullmatch(text):
        raise MoneyError("Ожидается число вида 1500.50.")
    return text.replace(" ", "").replace(",", ".")


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
