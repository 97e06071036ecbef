"""Import from a numeric contact field in Bitrix24 (the how-to's hand-kept «Баллы»):
every contact is read by keyset pages, 50 `crm.contact.list` to a batch, as the contact
sync reads them (within the portal's rate limit: the client paces its requests), and
each contact with a value in the field becomes a line of the import (api.data.imports):
its best phone is the card, its names, e-mail, birthdate and category come along, the
value is the balance. The report's "line" is the contact's ID. Dry run first, as for a
CSV; applying twice changes nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator

from activities.b24client import B24Client, B24PermanentError
from activities.contacts import card_data
from activities.portals import B24Settings, client_for
from api.data import imports
from api.ledger import rules as rules_mod
from api.ledger.errors import InvalidInput
from api.models import Portal
from scheduler.sync import BATCHES_MAX, LIST_SELECT, list_commands, read_pages

FIELD = re.compile(r"UF_CRM_[A-Z0-9_]{1,50}")
TEXT_FIELDS = ("last_name", "first_name", "middle_name", "email", "client_category")


@dataclass(frozen=True)
class CrmSource:
    field: str

    def describe(self) -> str:
        return f"поле {self.field} контактов Битрикс24; строка отчёта — ID контакта"


def check_field(field: str) -> str:
    field = (field or "").strip().upper()
    if not FIELD.fullmatch(field):
        raise InvalidInput({"field": "Код поля контакта вида UF_CRM_BALLY."})
    return field


def contact_rows(client: B24Client, field: str, category: str | None,
                 progress: Callable[[str], None] | None = None) -> Iterator[tuple[int, dict]]:
    select = [*LIST_SELECT, field, *([category] if category else [])]
    after_id = seen = 0
    for _ in range(BATCHES_MAX):
        result = client.batch(list_commands(after_id, select), halt=True)
        pages, finished, failure = read_pages(result, after_id)
        for rows in pages:
            for contact in rows:
                if contact.get(field) not in (None, "", False):
                    yield int(contact["ID"]), _line(contact, field, category)
        seen += sum(len(rows) for rows in pages)
        after_id = next((int(rows[-1]["ID"]) for rows in reversed(pages) if rows), after_id)
        if progress:
            progress(f"{seen:,} contacts read…")
        if failure is not None:
            raise failure
        if finished:
            return
    raise B24PermanentError("IMPORT_TOO_LONG", f"more than {BATCHES_MAX} batches of contacts")


def _line(contact: dict, field: str, category: str | None) -> dict:
    data = card_data(contact, category)
    line = {name: str(data[name]) for name in TEXT_FIELDS if data.get(name)}
    if data.get("birthdate"):
        line["birthdate"] = data["birthdate"].isoformat()
    return {**line, "contact_id": contact["ID"], "phone": data.get("phone") or "",
            "balance": str(contact[field]).strip()}


def run(portal: Portal, settings: B24Settings, field: str, *, apply: bool, actor: str,
        categories: list[str] | None = None, now: datetime | None = None, session=None,
        on_outcome=None, progress=None) -> imports.Report:
    field = check_field(field)
    client = client_for(portal, settings, session)
    rows = contact_rows(client, field, rules_mod.load(portal).client_category_field, progress)
    outcomes = imports.line_outcomes(portal, rows, apply=apply, actor=actor,
                                     categories=categories, now=now)
    return imports.report_of(CrmSource(field), apply, outcomes, on_outcome)
