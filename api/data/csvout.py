"""Writing CSV for people: `;`-separated UTF-8 with a BOM (what Excel in Russian opens
without asking), cells that a spreadsheet would run as formulas defused, and written in
pieces so that a file of a million rows never sits in memory."""
from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator

PIECE_CHARS = 64_000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe(value) -> str:
    """Text from outside (a name typed in the CRM) that starts like a formula is quoted
    with an apostrophe; numbers we format ourselves pass as they are."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_START) else value
    return str(value)


def writer(file, header: Iterable[str]):
    """A csv writer on `file` with the BOM and the header already written."""
    file.write("\ufeff")
    out = csv.writer(file, delimiter=";", lineterminator="\r\n")
    out.writerow(header)
    return out


def pieces(header: Iterable[str], rows: Iterable[Iterable]) -> Iterator[str]:
    buffer = io.StringIO()
    writer_ = writer(buffer, header)
    for row in rows:
        writer_.writerow(row)
        if buffer.tell() > PIECE_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
