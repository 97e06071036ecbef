"""API keys looked up by hash, cached per process for a few seconds.

The lookup is one indexed read (ApiKey.key_hash is unique) joined to the portal; the
row is then kept for KEY_CACHE_S in this process, so a busy client costs no statement
per request for its key. A revoked key (or a changed portal row) is therefore honoured
within KEY_CACHE_S by every process; `keys revoke` clears its own process at once.
Unknown keys are never cached, so guessing fills nothing.
"""
from __future__ import annotations

import time

from api.models import ApiKey, Portal

KEY_CACHE_S = 5.0
KEY_CACHE_MAX = 1024
_KEYS: dict[str, tuple[float, dict, dict]] = {}  # hash → (expiry, key row, portal row)


def lookup(digest: str) -> ApiKey | None:
    """The live key with this hash and its portal, each request its own copy."""
    now = time.monotonic()
    hit = _KEYS.get(digest)
    if hit is None or hit[0] <= now:
        row = (ApiKey.select(ApiKey, Portal).join(Portal)
               .where((ApiKey.key_hash == digest) & ApiKey.revoked_at.is_null()).first())
        if row is None:
            _KEYS.pop(digest, None)
            return None
        if len(_KEYS) >= KEY_CACHE_MAX:
            _KEYS.clear()
        hit = (now + KEY_CACHE_S, dict(row.__data__), dict(row.portal.__data__))
        _KEYS[digest] = hit
    key, portal = ApiKey(__no_default__=True), Portal(__no_default__=True)
    key.__data__, portal.__data__ = dict(hit[1]), dict(hit[2])
    key.__rel__["portal"] = portal
    return key


def forget() -> None:
    _KEYS.clear()
