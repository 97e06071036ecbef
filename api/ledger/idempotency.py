"""Every write carries a key; a repeat with the same inputs replays the first answer.

Callers check and record inside the transaction that holds the card's lock, so two
requests with one key are serialised and the second sees the first's record.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

from peewee import IntegrityError

from api.clock import utcnow
from api.ledger import sql
from api.ledger.errors import IdempotencyConflict, InvalidInput
from api.models import Card, Portal

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
    row = sql.row("find_operation", sql.pk(portal), key)
    if row is None:
        return None
    stored_hash, result = row
    if stored_hash != request_hash(kind, request):
        raise IdempotencyConflict(key)
    return Outcome(json.loads(result), replayed=True)


def record(portal: Portal, key: str, kind: str, request: dict, card: Card | None,
           result: dict) -> Outcome:
    sql.insert("insert_operation", sql.pk(portal), key, kind, request_hash(kind, request),
               sql.pk(card), json.dumps(result, ensure_ascii=False), sql.timestamp(utcnow()))
    return Outcome(result, replayed=False)


def retried_on_race(operation):
    """Run the operation again if a concurrent twin inserted the same key first.

    Two requests with one key on different cards lock different rows, so both may miss
    the Operation row; the unique index stops the second, whose rerun then replays the
    first's answer (or reports the conflict) instead of failing with a 500.
    """
    @functools.wraps(operation)
    def run(*args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except IntegrityError:
            return operation(*args, **kwargs)
    return run
