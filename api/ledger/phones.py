"""The card number is the client's mobile phone as digits with the country code."""
from __future__ import annotations

from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "RU"
MAX_INPUT_LEN = 40


class PhoneError(ValueError):
    pass


def normalize(raw, region: str = DEFAULT_REGION) -> str:
    """"+7 (916) 123-45-67", "8 916 123 45 67", "9161234567" → "79161234567"."""
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise PhoneError("Ожидается номер телефона строкой.")
    return _normalized(str(raw).strip(), region)


# Parsing a number costs about as much as a ledger statement and every request by card
# number parses one: the same text gives the same answer, so keep the recent ones.
@lru_cache(maxsize=4096)
def _normalized(text: str, region: str) -> str:
    if not text or len(text) > MAX_INPUT_LEN:
        raise PhoneError("Неверный номер телефона.")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise PhoneError(f"Неверный номер телефона: {text}") from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"Неверный номер телефона: {text}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def is_mobile(digits: str, region: str = DEFAULT_REGION) -> bool:
    kind = phonenumbers.number_type(phonenumbers.parse("+" + digits, region))
    return kind in (phonenumbers.PhoneNumberType.MOBILE,
                    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
