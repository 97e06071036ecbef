"""The placeholders a notice template can use, filled from a card."""
from __future__ import annotations

from api.models import Card
from notifications.templates import format_bonus


def card_context(card: Card | None, **extra) -> dict:
    if card is None:
        return dict(extra)
    return {"first_name": card.first_name or "", "last_name": card.last_name or "",
            "phone": card.number, "email": card.email or "", "card_number": card.number,
            "balance": format_bonus(card.balance_kop), "tier": card.tier, **extra}
