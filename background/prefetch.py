"""Many runs, one read: the reads of a portal's due runs fetched together in shared batch
requests, each deal or contact once.

Handlers read through `ctx.client.call` as if alone. Before a turn the worker replays each
run's `read` against a recording client that answers from a cache and, for a read it has
not got, stops the replay and notes it. The notes of all runs (deduplicated) go out in
batches of 50; the replay repeats while it finds new reads (a deal, then its contact), at
most ROUNDS_MAX times. The real run then finds its reads in the cache and sends nothing;
what the replay could not foresee (a write, a batch of its own) goes out as before.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterable

from activities.b24client import BATCH_COMMANDS_MAX, B24Error, classify

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"crm.deal.get", "crm.contact.get"})
ROUNDS_MAX = 3


class _NeedRead(Exception):
    def __init__(self, key: str, method: str, params: dict):
        super().__init__(key)
        self.key, self.method, self.params = key, method, params


class _CannotForesee(Exception):
    """The replay reached something other than a cacheable read: it stops there."""


def cache_key(method: str, params) -> str:
    return f"{method}?{json.dumps(params or {}, sort_keys=True, default=str)}"


class CachedClient:
    """A portal's client that answers cached reads; when `recording`, never sends."""

    def __init__(self, real, cache: dict, recording: bool = False):
        self._real, self._cache, self._recording = real, cache, recording

    def call(self, method: str, params=None) -> dict[str, Any]:
        if method in READ_METHODS:
            key = cache_key(method, params)
            if key in self._cache:
                found = self._cache[key]
                if isinstance(found, B24Error):
                    raise found
                return {"result": found}
            if self._recording:
                raise _NeedRead(key, method, dict(params or {}))
        elif self._recording:
            raise _CannotForesee(method)
        return self._real.call(method, params)

    def __getattr__(self, name: str):  # batch, endpoint, …: the real client's
        if self._recording:
            raise _CannotForesee(name)
        return getattr(self._real, name)


def prefetch(contexts: Iterable, read_of: Callable, client, cache: dict) -> int:
    """Fill `cache` with the reads the runs' `read` will make; returns the requests sent."""
    contexts = list(contexts)
    sent = 0
    for _ in range(ROUNDS_MAX):
        needs = _needs(contexts, read_of, client, cache)
        if not needs:
            break
        for chunk in _chunks(list(needs.items()), BATCH_COMMANDS_MAX):
            sent += 1
            if not _fetch(client, dict(chunk), cache):
                return sent  # the portal refused: the runs meet it themselves, paced
    return sent


def _needs(contexts, read_of, client, cache) -> dict[str, tuple[str, dict]]:
    needs: dict[str, tuple[str, dict]] = {}
    for ctx in contexts:
        read = read_of(ctx)
        if read is None:
            continue
        ctx.__dict__["client"] = CachedClient(client, cache, recording=True)
        try:
            read(ctx)
        except _NeedRead as need:
            needs.setdefault(need.key, (need.method, need.params))
        except Exception:  # noqa: BLE001 (the real run meets and reports it)
            pass
        finally:
            ctx.__dict__.pop("client", None)
    return needs


def _fetch(client, needs: dict[str, tuple[str, dict]], cache: dict) -> bool:
    aliases = {f"q{n}": key for n, key in enumerate(needs)}
    try:
        result = client.batch({alias: needs[key] for alias, key in aliases.items()})
    except B24Error as exc:
        log.info("prefetch refused (%s): the runs read for themselves", exc.code)
        return False
    for alias, key in aliases.items():
        if alias in result.errors:
            error = result.errors[alias]
            found = classify(error.code, error.description, None)
            if not found.retryable:
                cache[key] = found
        elif alias in result.results:
            cache[key] = result.results[alias]
    return True


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
