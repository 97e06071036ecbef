"""A chat notice from a scheduled job: recorded, and queued for Bitrix24 on its own key."""
from __future__ import annotations

from api.db import db
from api.models import Card, Portal
from background.outbox import enqueue
from notifications import notices


def enqueue_chat(portal: Portal, card: Card | None, user_id: int, template: str, context: dict,
                 key: str, settings: dict, now=None) -> None:
    with db.atomic():
        row = notices.record(portal, card, template, str(user_id), context, key, settings, now)
        call = notices.chat_call(row, settings)
        if call and portal.client_endpoint and portal.status == "active":
            enqueue(portal, f"notice:{row.id}", dict([call]))
