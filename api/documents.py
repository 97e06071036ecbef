"""Per-portal settings kept as one JSON document a row (program rules, notification
settings, page permissions): the checks and the upsert they share."""
from __future__ import annotations

import json

from marshmallow import Schema, ValidationError

from api.clock import utcnow
from api.db import db
from api.ledger.errors import InvalidInput
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
