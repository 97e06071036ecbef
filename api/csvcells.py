"""CSV cells a spreadsheet cannot run: text a client or an operator typed (a reference, a
comment) that starts with = + - @ or a tab/CR is a formula to Excel and LibreOffice
("=HYPERLINK(…)"), so such a cell gets a leading apostrophe (OWASP "CSV injection").
Plain numbers, ours like "-100.00", stay numbers."""
from __future__ import annotations

import re

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def safe_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_START) \
            and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value
