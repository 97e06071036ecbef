"""Per-portal settings kept as one JSON document a row (program rules, notification
settings, page permissions): the checks and the upsert they share.

A save is read-merge-write: `save` does it under a lock (BEGIN IMMEDIATE on SQLite, the
portal row FOR UPDATE on PostgreSQL), so two concurrent partial saves both land. A
client that read a version (`version_of`, the API's ETag) and sends it back (If-Match)
gets VersionConflict, 409, when someone saved in between: a stale save overwrites nothing.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from marshmallow import Schema, ValidationError

from api.clock import utcnow
from api.db import db, lock_rows
from api.ledger.errors import Conflict, InvalidInput
from api.models import Portal


def flatten_messages(messages, prefix: str = "") -> dict[str, str]:
    """marshmallow's nested errors as field paths: {"tiers": {0: {"percent": [..]}}} →
    {"tiers.0.percent": "..."}, the `fields` of our error responses."""
    flat: dict[str, str] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            flat.update(flatten_messages(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages):
        flat[prefix or "_schema"] = " ".join(messages)
    elif isinstance(messages, list):
        for i, value in enumerate(messages):
            flat.update(flatten_messages(value, f"{prefix}.{i}"))
    else:
        flat[prefix or "_schema"] = str(messages)
    return flat


def check_keys(changes, allowed) -> dict:
    """A JSON object with known keys only, or InvalidInput naming the others."""
    if not isinstance(changes, dict):
        raise InvalidInput({"_schema": "Ожидается объект JSON."})
    unknown = set(changes) - set(allowed)
    if unknown:
        raise InvalidInput({k: "Неизвестное поле." for k in sorted(unknown)})
    return changes


def validated(schema: Schema, document: dict, **options) -> dict:
    try:
        return schema.load(document, **options)
    except ValidationError as exc:
        raise InvalidInput(flatten_messages(exc.messages)) from None


def upsert(model, portal: Portal, document: dict, actor: str) -> None:
    """Store the portal's document (one row a portal), recording who changed it; the
    portal's version token moves in the same transaction (api.versions caches by it)."""
    from api.versions import bump

    data = json.dumps(document, ensure_ascii=False)
    with db.atomic():
        bump(portal)
        model.insert(portal=portal, data=data, updated_at=utcnow(), updated_by=actor).on_conflict(
            conflict_target=[model.portal],
            update={model.data: data, model.updated_at: utcnow(), model.updated_by: actor}
        ).execute()


class VersionConflict(Conflict):
    code = "version_conflict"

    def __init__(self, current: str):
        super().__init__("Настройки уже изменены другим сохранением; загрузите их заново.",
                         details={"current_version": current})


def version_of(model, portal: Portal) -> str:
    """The stored document's version: a hash of its text ("" text: never saved)."""
    row = model.select(model.data).where(model.portal == portal).first()
    return hashlib.sha256((row.data if row else "").encode()).hexdigest()[:16]


def _lock(portal: Portal) -> None:
    lock_rows(Portal.select(Portal.id).where(Portal.id == portal.id)).execute()


def read_versioned(model, portal: Portal, read: Callable[[], dict]) -> tuple[dict, str]:
    """read() and the version it is, taken together under the lock a save takes: a save
    landing between the two reads would otherwise pair an old document with a new version."""
    with db.atomic():
        _lock(portal)
        return read(), version_of(model, portal)


def save(model, portal: Portal, merged: Callable[[], dict], actor: str,
         expected_version: str | None = None) -> dict:
    """Store merged() (which reads the current document) under the portal's lock; with
    expected_version, only if nobody saved since that version was read."""
    with db.atomic():
        _lock(portal)
        current = version_of(model, portal)
        if expected_version is not None and expected_version != current:
            raise VersionConflict(current)
        document = merged()
        upsert(model, portal, document, actor)
    return document
