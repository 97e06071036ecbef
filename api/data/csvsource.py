"""Reading a CSV a person exported from a spreadsheet: UTF-8 or cp1251, `;` or `,`.

Both are detected from the start of the file (never the whole of it: a file of a
million rows is read as a stream) and reported, so the person sees what we assumed.
"""
from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from typing import BinaryIO, Iterator

SAMPLE_BYTES = 64 * 1024
FIELD_MAX_CHARS = 1000  # a cell longer than this is not a name or a phone
csv.field_size_limit(FIELD_MAX_CHARS * 10)

# Column names as people write them (Russian or English), to our field names.
ALIASES = {
    "phone": ("phone", "телефон", "мобильный", "мобильный_телефон", "номер", "номер_телефона"),
    "last_name": ("last_name", "lastname", "surname", "фамилия"),
    "first_name": ("first_name", "firstname", "name", "имя"),
    "middle_name": ("middle_name", "second_name", "отчество"),
    "email": ("email", "e_mail", "mail", "почта", "электронная_почта"),
    "birthdate": ("birthdate", "birthday", "birth_date", "дата_рождения", "день_рождения"),
    "client_category": ("category", "client_category", "категория", "категория_клиента"),
    "balance": ("balance", "bonuses", "баланс", "баллы", "бонусы"),
    "purchases": ("purchases", "total_purchases", "покупки", "сумма_покупок"),
    "expiry": ("expiry", "expires", "expires_at", "expiry_date", "срок", "сгорают",
               "срок_действия"),
}
_BY_ALIAS = {alias: name for name, aliases in ALIASES.items() for alias in aliases}


class SourceError(ValueError):
    """The file as a whole cannot be read (not one line of it): nothing is imported."""


@dataclass(frozen=True)
class Dialect:
    encoding: str  # "utf-8" or "cp1251"
    delimiter: str  # ";" or ","
    columns: tuple[str | None, ...]  # our field name per column; None: ignored

    def describe(self) -> str:
        known = [c for c in self.columns if c]
        return (f"кодировка {self.encoding}, разделитель «{self.delimiter}», "
                f"колонки: {', '.join(known)}")


def detect_encoding(sample: bytes) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        # final=False: a sample may end inside a multi-byte character; that is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp1251"  # every byte is a cp1251 character: the fallback always decodes


def detect_delimiter(header: str) -> str:
    return ";" if header.count(";") >= header.count(",") and ";" in header else ","


def column_names(header: list[str]) -> tuple[str | None, ...]:
    names = []
    for cell in header:
        key = cell.strip().strip("\ufeff").casefold().replace(" ", "_").replace("-", "_")
        names.append(_BY_ALIAS.get(key))
    if "phone" not in names:
        raise SourceError("В файле нет колонки с телефоном (phone или «Телефон»).")
    return tuple(names)


def open_rows(stream: BinaryIO) -> tuple[Dialect, Iterator[tuple[int, dict]]]:
    """The detected dialect, and the rows as (line number, {field: text}) one at a time."""
    sample = stream.read(SAMPLE_BYTES)
    stream.seek(0)
    if not sample.strip():
        raise SourceError("Файл пуст.")
    encoding = detect_encoding(sample)
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    first_line = sample.decode(encoding, errors="ignore").splitlines()[0]
    delimiter = detect_delimiter(first_line)
    reader = csv.reader(text, delimiter=delimiter)
    try:
        columns = column_names(next(reader))
    except (StopIteration, SourceError) as exc:
        text.detach()
        raise SourceError(str(exc) or "Файл пуст.") from None
    dialect = Dialect("utf-8" if encoding == "utf-8-sig" else encoding, delimiter, columns)
    return dialect, _rows(reader, columns, text)


def _rows(reader, columns, text) -> Iterator[tuple[int, dict]]:
    try:
        yield from _cells(reader, columns)
    except csv.Error as exc:  # an unclosed quote or a monster cell: where, not a stack trace
        raise SourceError(f"Строка {reader.line_num}: файл не читается как CSV ({exc}).") from None
    finally:
        text.detach()  # the caller opened the file and closes it; the wrapper must not


def _cells(reader, columns) -> Iterator[tuple[int, dict]]:
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        row = {name: cell.strip()[:FIELD_MAX_CHARS] for name, cell in zip(columns, cells) if name}
        # reader.line_num counts physical lines, so a quoted newline keeps numbers true
        yield reader.line_num, row
