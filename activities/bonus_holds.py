"""loyalty_bonus_hold / _capture / _release: a workflow that waits for approval reserves
the bonuses it is about to spend (api.ledger.holds), then debits or frees them."""
from __future__ import annotations

from types import SimpleNamespace

from activities import lookup, product_rows
from activities.forms import FormError
from activities.runtime import Reply, RunContext
from api.clock import utcnow
from api.ledger import holds
from api.ledger.money import format_kop
from api.models import Card
from notifications.followup import follow_up

HOURS_DEFAULT = 72


def _read_hold(ctx: RunContext) -> dict:
    if ctx.kop("Amount") is None:
        raise FormError("Amount", "Не указано, сколько бонусов зарезервировать")
    deal = lookup.deal_id(ctx)
    # A capture spends what was held: the deal's share payable by bonuses binds the hold.
    return {**lookup.card_contact(ctx),
            "payable_kop": product_rows.payable(ctx, deal) if deal else None}


def _write_hold(ctx: RunContext, data: dict) -> Reply:
    card = lookup.find_card(ctx, data["contact"])
    if card is None:
        return Reply.error("У клиента нет бонусной карты", HoldId="", Held="0.00")
    payable = data.get("payable_kop")
    if payable is not None and ctx.kop("Amount") > payable:
        return Reply.error(f"По товарам сделки бонусами можно оплатить не больше "
                           f"{format_kop(payable)}", HoldId="", Held="0.00")
    hours = ctx.integer("ExpiresHours") or HOURS_DEFAULT
    deal = lookup.deal_id(ctx)
    result = holds.hold(ctx.portal, card.number, ctx.kop("Amount"), key=ctx.key, actor=ctx.actor,
                        reference=f"deal:{deal}" if deal else None,
                        expires_in_s=hours * 3600, now=ctx.now).result
    return Reply.ok(f"Зарезервировано {format_kop(result['amount_kop'])} бонусов до "
                    f"{result['expires_at'][:16]} UTC (резерв {result['hold_id']})",
                    HoldId=str(result["hold_id"]), Held=format_kop(result["amount_kop"]),
                    Available=format_kop(result["available_kop"]),
                    ExpiresAt=result["expires_at"])


def _hold_id(ctx: RunContext) -> dict:
    hold_id = ctx.integer("HoldId")
    if not hold_id:
        raise FormError("HoldId", "Не указан номер резерва (HoldId из действия резервирования)")
    return {"hold": hold_id}


def _write_capture(ctx: RunContext, data: dict) -> Reply:
    result = holds.capture(ctx.portal, data["hold"], key=ctx.key, actor=ctx.actor,
                           amount_kop=ctx.kop("Amount"), now=ctx.now).result
    card = Card.get((Card.portal == ctx.portal) & (Card.number == result["card_number"]))
    reply = Reply.ok(f"Списано по резерву {data['hold']}: {format_kop(result['debited_kop'])}",
                     Debited=format_kop(result["debited_kop"]),
                     Balance=format_kop(card.balance_kop))
    reply.calls.update(follow_up(ctx.portal, card, "debit", result, ctx.key))
    return reply


def _write_release(ctx: RunContext, data: dict) -> Reply:
    result = holds.release(ctx.portal, data["hold"], key=ctx.key, actor=ctx.actor,
                           now=ctx.now).result
    card = Card.get((Card.portal == ctx.portal) & (Card.number == result["card_number"]))
    free = card.balance_kop - holds.held_kop(card.id, ctx.now or utcnow())
    return Reply.ok(f"Резерв {data['hold']} отменён: бонусы снова доступны",
                    Released="Y", Available=format_kop(max(free, 0)))


hold = SimpleNamespace(read=_read_hold, write=_write_hold)
capture = SimpleNamespace(read=_hold_id, write=_write_capture)
release = SimpleNamespace(read=_hold_id, write=_write_release)
