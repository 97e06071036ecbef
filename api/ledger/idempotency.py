"""Every write carries a key; a repeat with the same inputs replays the first answer.

A key lives in a scope: "client" for a key a caller sent (kept exactly as given),
"system" for the ledger's own causes. Everything else the ledger or the follow-up needs
a key for (each entry of an operation, its notices, its Bitrix24 batch) is *derived*
from (scope, key, purpose) by hashing, so no key a client can send equals a derived one,
and two keys that differ anywhere derive different keys however long they are.

The check and the record are one statement: the operation claims its key with
INSERT … ON CONFLICT DO NOTHING RETURNING id inside its transaction. A claim that
returns no row found the key taken: the first answer is replayed (or a conflict
raised). A concurrent twin waits on the unique index until the first commits (then
replays) or rolls back (then claims it itself), so a failed first use reserves nothing.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field

from peewee import IntegrityError

from api.clock import utcnow
from api.ledger import sql
from api.ledger.errors import IdempotencyConflict, InvalidInput
from api.models import Card, Portal

KEY_MAX_LEN = 200
CLIENT, SYSTEM = "client", "system"


@dataclass(frozen=True)
class Key:
    scope: str
    value: str

    def derive(self, *purpose) -> str:
        """A 64-hex key for something that follows from this one (length-prefixed parts,
        so ("a:b", "c") and ("a", "b:c") never meet)."""
        parts = [part.encode() for part in (self.scope, self.value, *map(str, purpose))]
        return hashlib.sha256(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).hexdigest()

    def __str__(self) -> str:
        return self.value


def system(value: str) -> Key:
    """A key of the ledger's own (welcome:<number>, birthday:<card>:<year>…)."""
    return Key(SYSTEM, value)


def as_key(key) -> Key:
    """A caller's key as it is: a plain string is a client's key."""
    return key if isinstance(key, Key) else Key(CLIENT, key)


@dataclass(frozen=True)
class Outcome:
    result: dict
    replayed: bool  # True: the key was seen before and nothing was written now
    card: Card | None = field(default=None, compare=False)  # what the operation held


@dataclass
class Claim:
    """An operation that owns its key in the open transaction; hands out entry keys."""

    id: int
    key: Key
    legs: int = 0
    # PostgreSQL: the id drawn for the operation's first entry with the claim itself, so
    # that entry's INSERT needs no answer (api.ledger.operations._lock_and_claim).
    entry_id: int | None = None

    def entry_key(self) -> str:
        self.legs += 1
        return self.key.derive("entry", self.legs)

    def drawn_entry_id(self) -> int | None:
        """The drawn id, once: the first entry takes it, the others get theirs on INSERT."""
        entry_id, self.entry_id = self.entry_id, None
        return entry_id


# Built once: json.dumps with options builds an encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, default=str).encode
_ANSWER = json.JSONEncoder(ensure_ascii=False).encode


def request_hash(kind: str, request: dict) -> str:
    canonical = _CANONICAL({"kind": kind, **request})
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key) -> Key:
    key = as_key(key)
    if not isinstance(key.value, str) or not key.value.strip():
        raise InvalidInput({"idempotency_key": "Нужен ключ идемпотентности (Idempotency-Key)."})
    if len(key.value) > KEY_MAX_LEN:
        raise InvalidInput({"idempotency_key": f"Не длиннее {KEY_MAX_LEN} символов."})
    return key


def claim(portal: Portal, key: Key, kind: str, request: dict, card: Card | None) -> Claim | Outcome:
    """Own the key for this transaction (a Claim), or the first answer (an Outcome)."""
    digest = request_hash(kind, request)
    row = sql.row("claim_operation", sql.pk(portal), key.scope, key.value, kind, digest,
                  sql.pk(card), sql.timestamp(utcnow()))
    return settle(portal, key, digest, None if row is None else row[0])


def settle(portal: Portal, key: Key, digest: str, claimed_id: int | None,
           entry_id: int | None = None) -> Claim | Outcome:
    """What a claim's INSERT gave: the new operation's id (a Claim), or None when the key
    was taken (the first answer, or a conflict if the inputs differ)."""
    if claimed_id is not None:
        return Claim(claimed_id, key, entry_id=entry_id)
    stored_hash, result = sql.row("find_operation", sql.pk(portal), key.scope, key.value)
    if stored_hash != digest:
        raise IdempotencyConflict(key.value)
    return Outcome(json.loads(result), replayed=True)


def finish(claim_: Claim, result: dict, card: Card | None = None, follow=None) -> Outcome:
    """Store the answer a repeat will replay; then `follow(outcome)`, still inside the
    operation's transaction (the caller's follow-up: notices, the Bitrix24 batch), so it
    exists exactly when the movement does, without a savepoint around the operation."""
    sql.later("finish_operation", _ANSWER(result), claim_.id)
    outcome = Outcome(result, replayed=False, card=card)
    if follow is not None:
        follow(outcome)
    return outcome


def retried_on_race(operation):
    """Run the operation once more if it lost a race on a unique index.

    The key itself cannot race (the claim waits for its twin); this covers the other
    unique rows an operation writes, whose rerun then sees the winner's rows.
    """
    @functools.wraps(operation)
    def run(*args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except IntegrityError:
            return operation(*args, **kwargs)
    return run
