"""Reversing a purchase (a refund): give back what was debited for the order, then
cancel the bonuses accrued for it.

Policy when the accrued bonuses were already spent: the balance never goes below
zero. The reversal takes the accrual's own remaining lot first, then the client's
other bonuses, oldest first, as far as the balance allows. What still cannot be
recovered is reported as `unrecovered_kop` on the result and left to a manager
(a later accrual is not docked automatically). Cumulative purchases drop by the
order's amount and the tier follows.
"""
from __future__ import annotations

from datetime import datetime

from api.clock import utcnow
from api.db import db
from api.ledger import idempotency, lots
from api.ledger.errors import AlreadyReversed, ReferenceNotFound
from api.ledger.idempotency import Claim, Outcome
from api.ledger.operations import (
    DEBIT,
    REVERSAL,
    _add_purchases,
    _by_reference,
    _check_reference,
    _is_reversed,
    _lock_and_claim,
    _open_accrual,
    _rules,
    expire_card,
    post,
)
from api.models import Card, Entry, Lot, Portal


@idempotency.retried_on_race
def reverse(portal: Portal, number: str, reference: str, *, key, actor: str,
            comment: str | None = None, now: datetime | None = None, follow=None) -> Outcome:
    key, now = idempotency.check_key(key), now or utcnow()
    reference = _check_reference("" if reference is None else reference)
    request = {"card": number, "reference": reference, "comment": comment}
    with db.atomic():
        card, claim = _lock_and_claim(portal, number, key, REVERSAL, request)
        if isinstance(claim, Outcome):
            return claim
        debits = [d for d in _by_reference(card, reference, DEBIT) if not _is_reversed(d)]
        accrual = _open_accrual(card, reference)
        if not debits and accrual is None:
            if Entry.select().where((Entry.card == card) & (Entry.reference == reference)).exists():
                raise AlreadyReversed(reference)
            raise ReferenceNotFound(reference)
        # Every entry below, the expiries included, takes its key from the claim: the lot
        # a debit is given back to may expire again in this very operation.
        expire_card(card, now, claim=claim)
        entries, returned = _return_debits(card, debits, claim, actor, now, comment)
        result = {"kind": REVERSAL, "card_number": card.number, "reference": reference,
                  "returned_debit_kop": returned, "reversed_accrual_kop": 0,
                  "unrecovered_kop": 0}
        if accrual is not None:
            entry, recovered = _cancel_accrual(card, accrual, claim, actor, now, comment)
            _add_purchases(card, -(accrual.purchase_kop or 0), _rules(card), now)
            entries.append(entry)
            result.update(reversed_accrual_kop=recovered,
                          unrecovered_kop=accrual.amount_kop - recovered)
        result.update(balance_kop=card.balance_kop, tier=card.tier,
                      entry_ids=[e.id for e in entries], created_at=now.isoformat())
        return idempotency.finish(claim, result, card, follow)


def _return_debits(card: Card, debits, claim: Claim, actor, now, comment):
    entries, returned = [], 0
    for debit in debits:
        entry = post(card, REVERSAL, -debit.amount_kop, claim, actor=actor, now=now,
                     reference=debit.reference, reverses=debit,
                     comment=comment or "Возврат списанных бонусов")
        lots.give_back(entry, debit)
        entries.append(entry)
        returned += -debit.amount_kop
    # Given-back lots may be past their lifetime: expire them now, not at tomorrow's run.
    entries += expire_card(card, now, claim=claim)
    return entries, returned


def _cancel_accrual(card: Card, accrual: Entry, claim: Claim, actor: str, now: datetime,
                    comment):
    recovered = min(accrual.amount_kop, card.balance_kop)
    entry = post(card, REVERSAL, -recovered, claim, actor=actor, now=now,
                 reference=accrual.reference, reverses=accrual, purchase_kop=accrual.purchase_kop,
                 comment=comment or "Отмена начисления")
    own = list(Lot.select().where(Lot.entry == accrual))
    lots.take(entry, own + [lot for lot in lots.spendable(card, now) if lot not in own], recovered)
    return entry, recovered
