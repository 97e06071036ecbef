"""loyalty_bonus_debit: spend bonuses only when the balance covers them."""
from __future__ import annotations

from activities import lookup, product_rows
from activities.forms import FormError
from activities.runtime import Reply, RunContext
from api.ledger import operations
from api.ledger.errors import InsufficientBalance, MaxShareExceeded
from api.ledger.money import format_kop
from api.models import Card
from notifications.followup import follow_up


def read(ctx: RunContext) -> dict:
    if ctx.kop("Amount") is None:
        raise FormError("Amount", "Не указано, сколько бонусов списать")
    deal = lookup.deal_id(ctx)
    return {**lookup.card_contact(ctx), "payable_kop": product_rows.payable(ctx, deal) if deal else None}


def write(ctx: RunContext, data: dict) -> Reply:
    card = lookup.find_card(ctx, data["contact"])
    if card is None:
        return Reply.error("У клиента нет бонусной карты", Debited="0.00", Balance="0.00")
    deal = ctx.integer("DealId") or ctx.document_id_of("DEAL")
    amount, payable = ctx.kop("Amount"), data.get("payable_kop")
    if payable is not None and amount > payable:
        # The deal's products allow bonuses to pay only part of them (rules per product).
        if not ctx.flag("AllowPartial", False) or payable == 0:
            return Reply.error(f"По товарам сделки бонусами можно оплатить не больше "
                               f"{format_kop(payable)}", Debited="0.00",
                               Balance=format_kop(card.balance_kop))
        amount = payable
    try:
        result = operations.debit(
            ctx.portal, card.number, amount, key=ctx.key, actor=ctx.actor,
            reference=f"deal:{deal}" if deal else None, order_kop=ctx.kop("OrderAmount"),
            partial=ctx.flag("AllowPartial", False), now=ctx.now).result
    except (InsufficientBalance, MaxShareExceeded) as exc:
        return Reply.error(exc.message, Debited="0.00", Balance=format_kop(card.balance_kop))
    card = Card.get_by_id(card.id)
    reply = Reply.ok(f"Списано {format_kop(result['debited_kop'])} бонусов",
                     Debited=format_kop(result["debited_kop"]), Balance=format_kop(card.balance_kop))
    reply.calls.update(follow_up(ctx.portal, card, result['kind'], result, ctx.key))
    return reply
