"""Holds: bonuses reserved while a business process waits for approval.

- `hold` reserves up to the available balance (balance minus active holds) for a time;
  nothing is debited yet, the bonuses just stop being spendable.
- `capture` turns a hold into a debit, all of it or a part; the rest is freed.
- `release` frees it; a hold whose time is up frees itself (it simply stops counting)
  and reads as `expired`.
Every write locks the card like the other operations, so a hold and parallel debits on
one card run one after another and the card never goes below what is held; each carries
an idempotency key like every ledger write.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from peewee import fn

from api.clock import utcnow
from api.db import db
from api.ledger import idempotency, operations
from api.ledger.errors import Conflict, InsufficientBalance, InvalidInput, NotFound
from api.ledger.idempotency import Outcome
from api.ledger.money import format_kop
from api.models import Card, Hold, Portal

HOLD, CAPTURE, RELEASE = "hold", "hold_capture", "hold_release"
TTL_MAX_S = 30 * 86_400
TTL_DEFAULT_S = 3 * 86_400


HOLD_ID_MAX = 2**31 - 1  # the id column's range on PostgreSQL


class HoldNotFound(NotFound):
    code = "hold_not_found"

    def __init__(self, hold_id):
        super().__init__(f"Резерв {hold_id} не найден")


class HoldClosed(Conflict):
    code = "hold_closed"

    def __init__(self, hold: Hold, state: str):
        super().__init__(f"Резерв {hold.id} уже {STATE_NAMES[state]}",
                         details={"hold_id": hold.id, "status": state})


STATE_NAMES = {"captured": "списан", "released": "отменён", "expired": "истёк"}


def held_kop(card_id: int, now: datetime) -> int:
    """What the card's live holds reserve: read under the card's lock by every debit."""
    return int(Hold.select(fn.COALESCE(fn.SUM(Hold.amount_kop), 0))
               .where((Hold.card == card_id) & (Hold.status == "active")
                      & (Hold.expires_at > now)).scalar())


def state(hold: Hold, now: datetime | None = None) -> str:
    if hold.status == "active" and hold.expires_at <= (now or utcnow()):
        return "expired"
    return hold.status


def shown(hold: Hold, now: datetime | None = None) -> dict:
    return {"hold_id": hold.id, "card_number": hold.card.number, "reference": hold.reference,
            "amount_kop": hold.amount_kop, "captured_kop": hold.captured_kop,
            "status": state(hold, now), "expires_at": hold.expires_at.isoformat(),
            "created_at": hold.created_at.isoformat()}


def _ttl(expires_in_s) -> int:
    ttl = TTL_DEFAULT_S if expires_in_s is None else expires_in_s
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= TTL_MAX_S:
        raise InvalidInput({"expires_in": f"От 60 секунд до {TTL_MAX_S // 86_400} дней."})
    return ttl


@idempotency.retried_on_race
def hold(portal: Portal, number: str, amount_kop: int, *, key, actor: str,
         reference: str | None = None, expires_in_s: int | None = None,
         now: datetime | None = None, follow=None) -> Outcome:
    key, now, ttl = idempotency.check_key(key), now or utcnow(), _ttl(expires_in_s)
    if amount_kop <= 0:
        raise InvalidInput({"amount": "Сумма резерва должна быть больше нуля."})
    request = {"card": number, "amount_kop": amount_kop, "reference": reference,
               "expires_in_s": ttl}
    with db.atomic():
        card = operations.lock_card(portal, number)
        claim = idempotency.claim(portal, key, HOLD, request, card)
        if isinstance(claim, Outcome):
            return claim
        operations._check_active(card)
        operations.expire_card(card, now, claim=claim)
        available = card.balance_kop - held_kop(card.id, now)
        if amount_kop > available:
            raise InsufficientBalance(max(available, 0))
        row = Hold.create(portal=portal, card=card, reference=reference, amount_kop=amount_kop,
                          expires_at=now + timedelta(seconds=ttl), actor=actor, created_at=now)
        row.card = card
        result = {**shown(row, now), "balance_kop": card.balance_kop,
                  "available_kop": available - amount_kop}
        return idempotency.finish(claim, result, card, follow)


def _locked(portal: Portal, hold_id: int) -> Hold:
    """The hold, read again once its card is locked (as every operation locks it)."""
    if not 0 < hold_id <= HOLD_ID_MAX:  # past the column: no hold (not a 500)
        raise HoldNotFound(hold_id)
    number = (Card.select(Card.number).join(Hold, on=(Hold.card == Card.id))
              .where((Hold.id == hold_id) & (Hold.portal == portal)).scalar())
    if number is None:
        raise HoldNotFound(hold_id)
    card = operations.lock_card(portal, number)
    row = Hold.get_by_id(hold_id)
    row.card = card  # the locked row: no second read for its number
    return row


def _check_open(row: Hold, now: datetime) -> None:
    if state(row, now) != "active":
        raise HoldClosed(row, state(row, now))


@idempotency.retried_on_race
def capture(portal: Portal, hold_id: int, *, key, actor: str, amount_kop: int | None = None,
            now: datetime | None = None, follow=None) -> Outcome:
    """Debit the hold (all, or `amount_kop` of it) and free the rest, in one transaction."""
    key, now = idempotency.check_key(key), now or utcnow()
    request = {"hold": hold_id, "amount_kop": amount_kop}
    with db.atomic():
        row = _locked(portal, hold_id)
        claim = idempotency.claim(portal, key, CAPTURE, request, row.card)
        if isinstance(claim, Outcome):
            return claim
        _check_open(row, now)
        amount = row.amount_kop if amount_kop is None else amount_kop
        if not 0 < amount <= row.amount_kop:
            raise InvalidInput({"amount": f"От 0,01 до {format_kop(row.amount_kop)}."})
        # Closed first, so the debit below no longer counts this hold as reserved.
        Hold.update(status="captured", captured_kop=amount, closed_at=now).where(
            Hold.id == row.id).execute()
        # A hold is captured once (it is closed now), so its debit's key is the hold's own.
        debited = operations.debit(portal, row.card.number, amount,
                                   key=idempotency.system(f"hold:{row.id}:capture"), actor=actor,
                                   reference=row.reference, comment=f"Списание резерва {row.id}",
                                   now=now)
        debit = debited.result
        Hold.update(capture_entry=debit["entry_id"]).where(Hold.id == row.id).execute()
        row.status, row.captured_kop, row.closed_at = "captured", amount, now
        result = {**shown(row, now), "debited_kop": amount,
                  "entry_id": debit["entry_id"], "balance_kop": debit["balance_kop"],
                  "tier": debit["tier"], "kind": "debit", "amount_kop": -amount,
                  "card_number": row.card.number}
        return idempotency.finish(claim, result, debited.card or row.card, follow)


@idempotency.retried_on_race
def release(portal: Portal, hold_id: int, *, key, actor: str,
            now: datetime | None = None, follow=None) -> Outcome:
    key, now = idempotency.check_key(key), now or utcnow()
    request = {"hold": hold_id}
    with db.atomic():
        row = _locked(portal, hold_id)
        claim = idempotency.claim(portal, key, RELEASE, request, row.card)
        if isinstance(claim, Outcome):
            return claim
        _check_open(row, now)
        Hold.update(status="released", closed_at=now).where(Hold.id == row.id).execute()
        row.status, row.closed_at = "released", now
        return idempotency.finish(claim, shown(row, now), row.card, follow)


def of_card(card, now: datetime | None = None) -> list[Hold]:
    return list(Hold.select().where(Hold.card == card).order_by(Hold.id.desc()).limit(100))
