"""Enqueue Bitrix24 writes in the caller's transaction; background.dispatch delivers them."""
from __future__ import annotations

import json

from api.models import Outbox, Portal

KEY_MAX_LEN = 200


def enqueue(portal: Portal, key: str, calls: dict[str, tuple[str, dict]]) -> None:
    """Record writes to make; the same key twice is one delivery (the first wins)."""
    if not calls:
        return
    if len(calls) > 50:
        raise ValueError("one outbox row is one batch: at most 50 calls")
    if len(key) > KEY_MAX_LEN:
        # Cut short, two causes would share a row and the second's writes be dropped:
        # callers derive long keys by hashing (notifications.followup.notice_key).
        raise ValueError(f"outbox key longer than {KEY_MAX_LEN}")
    Outbox.insert(portal=portal, key=key,
                  calls=json.dumps({k: [m, p] for k, (m, p) in calls.items()},
                                   ensure_ascii=False, default=str)
                  ).on_conflict_ignore().execute()
