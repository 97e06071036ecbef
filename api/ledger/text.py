"""What text may be stored: no control characters, no lone surrogates.

PostgreSQL refuses a NUL in text (a 500 before this check) and SQLite stores it, after
which every reader of that row must cope; a lone surrogate cannot be encoded as UTF-8 at
all. Line breaks and tabs are allowed only where text is multi-line (comments, templates).
"""
from __future__ import annotations

import re

from marshmallow import ValidationError

# C0 controls except tab/LF/CR, DEL, C1 controls, lone surrogates, the two noncharacters.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_FORBIDDEN_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

CONTROL_MESSAGE = "Control characters (such as NUL) are not allowed."


def bad_character(text: str, *, multiline: bool = True) -> str | None:
    """The first character text may not hold, as U+XXXX, or None."""
    found = (_FORBIDDEN if multiline else _FORBIDDEN_IN_LINE).search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def clean(text: str, *, multiline: bool = False) -> str:
    """Text from a system we do not control (CRM fields), with what we cannot store removed."""
    return (_FORBIDDEN if multiline else _FORBIDDEN_IN_LINE).sub("", text)


def find_bad_text(value, path: str = "") -> tuple[str, str] | None:
    """(field path, character) of the first string in a decoded JSON document, keys included,
    that holds a forbidden character; None when all are clean."""
    if isinstance(value, str):
        found = bad_character(value)
        return (path or "_schema", found) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            found = bad_character(str(key))
            if found:
                return (where, found)
            hit = find_bad_text(item, where)
            if hit:
                return hit
    if isinstance(value, list):
        for i, item in enumerate(value):
            hit = find_bad_text(item, f"{path}.{i}" if path else str(i))
            if hit:
                return hit
    return None


class NoControl:
    """A marshmallow validator: refuses what bad_character finds (single-line by default)."""

    def __init__(self, *, multiline: bool = False):
        self.multiline = multiline

    def __call__(self, value: str) -> str:
        found = bad_character(value, multiline=self.multiline)
        if found:
            raise ValidationError(f"{CONTROL_MESSAGE} Found {found}.")
        return value
