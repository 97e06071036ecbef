"""loyalty_bonus_accrue: bonuses for a won deal, once per deal."""
from __future__ import annotations

from activities import lookup, product_rows
from activities.forms import FormError
from activities.runtime import Reply, RunContext
from api.ledger import operations
from api.ledger.errors import AlreadyAccrued
from api.ledger.money import format_kop
from api.models import Card, Entry
from notifications.followup import follow_up


def read(ctx: RunContext) -> dict:
    deal = lookup.deal_id(ctx)
    contact, amount = lookup.contact_id(ctx), ctx.kop("Amount")
    given = amount
    if deal and (contact is None or amount is None):
        row = lookup.read_deal(ctx, deal)
        contact = contact or lookup.contact_of_deal(row)
        if amount is None:
            amount = ctx_amount(row)
    # Rules per product apply when the amount comes from the deal, not when one is given.
    lines = product_rows.read_lines(ctx, deal) if deal and given is None else None
    if lines:
        amount = sum(line.amount_kop for line in lines)
    if amount is None:
        raise FormError("Amount", "Не указана сумма покупки (и нет сделки, чтобы взять её сумму)")
    return {"deal": deal, "contact": contact, "amount": amount, "lines": lines}


def ctx_amount(deal_row: dict) -> int | None:
    from api.ledger.money import parse_kop

    value = deal_row.get("OPPORTUNITY")
    return parse_kop(value) if value not in (None, "", "0", "0.00") else None


def write(ctx: RunContext, data: dict) -> Reply:
    card = lookup.find_card(ctx, data["contact"])
    if card is None:
        return Reply.error("У клиента нет бонусной карты", AlreadyAccrued="N")
    reference = f"deal:{data['deal']}" if data["deal"] else None
    try:
        result = operations.accrue(ctx.portal, card.number, data["amount"], key=ctx.key,
                                   actor=ctx.actor, reference=reference, now=ctx.now,
                                   lines=data.get("lines")).result
    except AlreadyAccrued as exc:
        return _already(card, exc)
    card = Card.get_by_id(card.id)
    why = {"Explanation": result["explanation"]} if result.get("explanation") else {}
    log = f"Начислено {format_kop(result['amount_kop'])} бонусов ({result['percent']} %)"
    reply = Reply.ok(log + (f": {why['Explanation']}" if why else ""),
                     Accrued=format_kop(result["amount_kop"]), Percent=result["percent"],
                     Balance=format_kop(card.balance_kop), Tier=card.tier, AlreadyAccrued="N",
                     **why)
    reply.calls.update(follow_up(ctx.portal, card, result['kind'], result, ctx.key))
    return reply


def _already(card: Card, exc: AlreadyAccrued) -> Reply:
    """Return values describe this run, which accrued nothing: a designer's branch on
    `Accrued > 0` must not see the first run's amount again. The log names it."""
    entry = Entry.get_by_id(exc.details["entry_id"])
    return Reply.ok(f"По этой сделке бонусы уже начислены ({format_kop(entry.amount_kop)}), "
                    f"сейчас не начислено ничего",
                    Accrued=format_kop(0), Percent="0.00", Balance=format_kop(card.balance_kop),
                    Tier=card.tier, AlreadyAccrued="Y")
