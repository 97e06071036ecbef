"""Every write carries a key; a repeat with the same inputs replays the first answer.

Callers check and record inside the transaction that holds the card's lock, so two
requests with one key are serialised and the second sees the first's record.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from api.ledger.errors import IdempotencyConflict, InvalidInput
from api.models import Card, Operation, Portal

KEY_MAX_LEN = 200


@dataclass(frozen=True)
class Outcome:
    result: dict
    replayed: bool  # True: the key was seen before and nothing was written now


def request_hash(kind: str, request: dict) -> str:
    canonical = json.dumps({"kind": kind, **request}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput({"idempotency_key": "Нужен ключ идемпотентности (Idempotency-Key)."})
    if len(key) > KEY_MAX_LEN:
        raise InvalidInput({"idempotency_key": f"Не длиннее {KEY_MAX_LEN} символов."})
    return key


def replay(portal: Portal, key: str, kind: str, request: dict) -> Outcome | None:
    row = Operation.get_or_none((Operation.portal == portal) & (Operation.key == key))
    if row is None:
        return None
    if row.request_hash != request_hash(kind, request):
        raise IdempotencyConflict(key)
    return Outcome(json.loads(row.result), replayed=True)


def record(portal: Portal, key: str, kind: str, request: dict, card: Card | None,
           result: dict) -> Outcome:
    Operation.create(portal=portal, key=key, kind=kind, request_hash=request_hash(kind, request),
                     card=card, result=json.dumps(result, ensure_ascii=False))
    return Outcome(result, replayed=False)
