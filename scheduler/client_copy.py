"""Our copy of every Bitrix24 contact (card or not), kept by the sync: the birthday run
asks managers to issue cards, so it must see the clients who have none."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from activities.contacts import card_data
from api.ledger.cards import month_day
from api.models import Contact, Portal

COPIED = ("last_name", "first_name", "middle_name", "phone", "email", "birthdate",
          "birthday_md", "manager_id", "synced_at")


def store(portal: Portal, rows: Iterable[Mapping[str, Any]], category: str | None,
          now: datetime) -> int:
    """Upsert the contacts of a page (or of an event batch); returns how many."""
    from api.data.forget import without_forgotten  # a forgotten client is not copied back

    records = [_record(portal, row, category, now) for row in without_forgotten(portal, list(rows))]
    if records:
        Contact.insert_many(records).on_conflict(
            conflict_target=[Contact.portal, Contact.contact_id],
            preserve=[getattr(Contact, name) for name in COPIED]).execute()
    return len(records)


def _record(portal: Portal, row: Mapping[str, Any], category: str | None, now: datetime) -> dict:
    data = card_data(dict(row), category)
    record = {"portal": portal.id, "contact_id": data["contact_id"], "synced_at": now,
              "birthday_md": month_day(data["birthdate"])}
    for name in ("last_name", "first_name", "middle_name", "phone", "email", "birthdate",
                 "manager_id"):
        value = data[name]
        limit = getattr(Contact._meta.fields[name], "max_length", None)
        record[name] = value[:limit] if limit and isinstance(value, str) else value
    return record
