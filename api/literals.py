"""The values of our prepared statements written as SQL literals, as psycopg2 writes them.

psycopg2 binds on the client: it writes every value into the statement's text. For each
value it walks its adapter protocol (a registry lookup, an adapter object, a `prepare`
method asked for and, for most types, not found: an AttributeError built and cleared,
then `getquoted`): about 10,000 instructions a value, a sixth of the CPU an accrual costs
our process (55 values in its eight statements).

The ledger's prepared statements (`EXECUTE loyalty_…`, api.ledger.sql) bind a handful of
plain types. Those are written here, byte for byte as psycopg2 writes them
(tests/test_literals.py compares the two over hostile values); a value of any other type,
a connection whose strings are not standard-conforming or not UTF-8, and every other
statement go through psycopg2 as before.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

PREPARED = "EXECUTE loyalty_"  # the statements api.ledger.sql writes: `EXECUTE name (%s, …)`
NUL = "A string literal cannot contain NUL (0x00) characters."  # psycopg2's own refusal


def literal(value) -> str | None:
    """The literal psycopg2 would write, or None for a value left to psycopg2."""
    kind = type(value)  # exact types: a subclass may quote itself otherwise
    if value is None:
        return "NULL"
    if kind is int:
        # A space before a minus, as psycopg2: "x - -5" must not become "x --5" (a comment).
        return str(value) if value >= 0 else f" {value}"
    if kind is str:
        if "\x00" in value:
            raise ValueError(NUL)
        # Standard-conforming strings (checked by `render`): only the quote is special.
        return "'" + value.replace("'", "''") + "'"
    if kind is datetime:
        return None if value.tzinfo is not None else f"'{value.isoformat()}'::timestamp"
    if kind is Decimal:
        if not value.is_finite():
            return None
        text = str(value)
        return f" {text}" if text.startswith("-") else text
    if kind is bool:
        return "true" if value else "false"
    if kind is date:
        return f"'{value.isoformat()}'::date"
    return None


_SHAPES: dict[str, tuple[str, int]] = {}  # statement → (its EXECUTE name, its %s count)


def render(statement: str, params, conn) -> bytes | None:
    """`EXECUTE loyalty_x (%s, %s)` with its values written in, encoded for the wire; None
    when psycopg2 must write it (another statement, another type, another connection)."""
    if not statement.startswith(PREPARED) or conn.encoding != "UTF8" \
            or conn.get_parameter_status("standard_conforming_strings") != "on":
        return None
    shape = _SHAPES.get(statement)
    if shape is None:  # our statements are few: their shape is read once each
        shape = _SHAPES[statement] = (statement.split(" (", 1)[0], statement.count("%s"))
    name, marks = shape
    if not params:
        return statement.encode() if not marks else None
    if marks != len(params):
        return None  # psycopg2 says what is wrong
    values = []
    for value in params:
        text = literal(value)
        if text is None:
            return None
        values.append(text)
    return f"{name} ({', '.join(values)})".encode()
