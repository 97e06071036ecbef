"""Entries on the contact's CRM timeline for every movement of its card.

An app log entry (crm.timeline.logmessage.add) where the portal allows it; the
dispatcher turns a refused one into a comment (crm.timeline.comment.add).
"""
from __future__ import annotations

from api.models import Card
from notifications.templates import format_bonus

CONTACT_TYPE_ID = 3  # CRM object type of contacts
TITLES = {"accrual": "Начислены бонусы", "debit": "Списаны бонусы", "reversal": "Возврат по заказу",
          "adjustment": "Корректировка бонусов", "expiry": "Сгорели бонусы",
          "birthday": "Бонусы ко дню рождения", "welcome": "Приветственные бонусы"}
# Permanent refusals of logmessage after which a comment is tried instead.
FALLBACK_ON = ("ACCESS_DENIED", "ERROR_METHOD_NOT_FOUND", "METHOD_NOT_FOUND", "ERROR_CORE", "0")


def entry_call(card: Card, kind: str, result: dict) -> tuple[str, dict] | None:
    if not card.contact_id or kind not in TITLES:
        return None
    amount = result.get("amount_kop", 0)
    sign = "+" if amount > 0 else "−" if amount < 0 else ""
    lines = [f"{sign}{format_bonus(abs(amount))} бонусов, баланс {format_bonus(card.balance_kop)}"]
    if result.get("percent") and kind == "accrual":
        lines[0] += f" ({result['percent']} % от {format_bonus(result.get('purchase_kop') or 0)} ₽)"
    if result.get("reference"):
        lines.append(f"Основание: {result['reference']}")
    if result.get("comment"):
        lines.append(f"Причина: {result['comment']}")
    return _log(card, TITLES[kind], "\n".join(lines))


def tier_call(card: Card, tier_before: str) -> tuple[str, dict] | None:
    if not card.contact_id:
        return None
    return _log(card, "Новый уровень программы лояльности", f"{tier_before} → {card.tier}")


def _log(card: Card, title: str, text: str) -> tuple[str, dict]:
    return ("crm.timeline.logmessage.add", {"fields": {
        "entityTypeId": CONTACT_TYPE_ID, "entityId": card.contact_id, "title": title,
        "text": text, "iconCode": "info"}})


def as_comment(params: dict) -> tuple[str, dict]:
    """The same entry as a plain timeline comment."""
    fields = params["fields"]
    return ("crm.timeline.comment.add", {"fields": {
        "ENTITY_ID": fields["entityId"], "ENTITY_TYPE": "contact",
        "COMMENT": f"{fields['title']}\n{fields['text']}"}})
