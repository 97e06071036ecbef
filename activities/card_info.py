"""loyalty_card_info: balance and status, so a process can branch before a debit."""
from __future__ import annotations

from activities import lookup
from activities.runtime import Reply, RunContext
from api.ledger.money import format_kop


def read(ctx: RunContext) -> dict:
    return lookup.card_contact(ctx)


def write(ctx: RunContext, data: dict) -> Reply:
    card = lookup.find_card(ctx, data["contact"])
    if card is None:
        return Reply.ok("Бонусной карты нет", HasCard="N", CardNumber="", Balance="0.00", Tier="",
                        TotalPurchases="0.00")
    return Reply.ok(f"Карта {card.number}: баланс {format_kop(card.balance_kop)}, {card.tier}",
                    HasCard="Y", CardNumber=card.number, Balance=format_kop(card.balance_kop),
                    Tier=card.tier, TotalPurchases=format_kop(card.purchases_kop))
