"""Chat notices to Bitrix24 users, rendered from the notice templates."""
from __future__ import annotations

from notifications.templates import DEFAULT_TEMPLATES, TemplateError, render_notice

# A new notification with the same TAG replaces the older one: a redelivery after a
# crash shows once. TAG must be unique per app, so it carries our prefix.
TAG_PREFIX = "loyalty"


def chat_notice(user_id: int, template: str, context: dict, tag: str) -> tuple[str, dict]:
    """An im.notify.personal.add call for the outbox (or to send now)."""
    try:
        text = render_notice(DEFAULT_TEMPLATES[template], context).body
    except TemplateError as exc:
        text = f"Уведомление программы лояльности ({template}): {exc.message}"
    return ("im.notify.personal.add",
            {"USER_ID": user_id, "MESSAGE": text, "TAG": f"{TAG_PREFIX}:{tag}"[:255]})
