"""Per-process caches of a portal's settings documents, kept true by a version token.

Every save of a portal's document (api.documents.upsert) writes a new random token for
the portal in the same transaction (`bump`). The ledger reads the token with the card it
locks (one join, no extra statement) and asks here for the rules or notification
settings of that token: the same token means the same stored text, so the parsed copy
is reused; a new token loads afresh. A token is random, not a counter, so a restored
backup or a truncated test database can never hand back a copy of other data.

No token (nothing saved for the portal yet) is also a state: the defaults. Writing the
documents' tables around api.documents would leave these caches stale.
"""
from __future__ import annotations

import secrets
from typing import Callable

from api.models import Portal, SettingsVersion

UNKNOWN = object()  # the caller holds no token read in this transaction: load, don't cache
_CACHE: dict[tuple[str, int], tuple[object, object]] = {}
CACHE_MAX = 4096  # (document, portal) pairs kept; past that the cache starts over


def bump(portal: Portal) -> None:
    """Call inside the transaction that changes one of the portal's documents."""
    token = secrets.randbits(62)
    SettingsVersion.insert(portal=portal, token=token).on_conflict(
        conflict_target=[SettingsVersion.portal],
        update={SettingsVersion.token: token}).execute()


def cached(document: str, portal_id: int, token, load: Callable[[], object]):
    """The document as of `token`; `load()` runs only when this process lacks that version."""
    if token is UNKNOWN:
        return load()
    found = _CACHE.get((document, portal_id))
    if found is not None and found[0] == token:
        return found[1]
    value = load()
    if len(_CACHE) >= CACHE_MAX:
        _CACHE.clear()
    _CACHE[(document, portal_id)] = (token, value)
    return value


def token_of(portal_id: int):
    """The portal's current token, read now (for callers that locked no card)."""
    row = SettingsVersion.select(SettingsVersion.token).where(
        SettingsVersion.portal == portal_id).tuples().first()
    return row[0] if row else None
