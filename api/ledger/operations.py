"""The ledger's writes. Each public function is one transaction that:

1. locks the card (row lock on PostgreSQL; SQLite's IMMEDIATE transaction already
   serialises writers), so concurrent operations on a card run one after another;
2. replays the first answer if the idempotency key was seen (writing nothing);
3. appends entries and moves the cached balance in the same transaction.

Entries are never updated or deleted; a correction is a new entry.

The statements an operation repeats (the card lock, the balance moves, entries, lots,
the idempotency record) are written out in api.ledger.sql and run as they are; the
Card, Entry and Lot objects passed between these functions are models filled from
those rows with the columns the ledger uses (see `_lock`).
"""
from __future__ import annotations

from datetime import datetime

from api.clock import utcnow
from api.db import db, lock_rows
from api.ledger import idempotency, lots, rollups, sql
from api.ledger import rules as rules_mod
from api.ledger.errors import (
    AlreadyAccrued,
    CardBlocked,
    CardNotFound,
    InsufficientBalance,
    InvalidInput,
    MaxShareExceeded,
)
from api.ledger.idempotency import Outcome
from api.ledger.money import percent_of
from api import product_rules
from api.models import Card, Entry, Portal

ACCRUAL, DEBIT, REVERSAL, ADJUSTMENT = "accrual", "debit", "reversal", "adjustment"
EXPIRY, WELCOME, BIRTHDAY = "expiry", "welcome", "birthday"
# import: an opening balance brought from elsewhere (api.imports); transfer: a merge of two
# cards moves the balance out of one and into the other as a pair (api.merges).
IMPORT, TRANSFER = "import", "transfer"
KINDS = (ACCRUAL, DEBIT, REVERSAL, ADJUSTMENT, EXPIRY, WELCOME, BIRTHDAY, IMPORT, TRANSFER)
REFERENCE_MAX_LEN = 100
COMMENT_MAX_LEN = 1000


def lock_card(portal: Portal, number: str) -> Card:
    """The whole card, locked for the transaction (for callers outside the ledger)."""
    query = Card.select().where((Card.portal == portal) & (Card.number == number))
    card = lock_rows(query).first()
    if card is None:
        raise CardNotFound(number)
    return card


# The card columns the operations read: what `_lock` loads (sql "lock_card", same order).
_LOCKED_COLUMNS = ("id", "portal", "number", "status", "tier", "balance_kop", "purchases_kop")
# What an entry may carry besides its amount; empty unless given.
_ENTRY_OPTIONAL = {"reference": None, "purchase_kop": None, "percent": None, "reverses": None,
                   "comment": None}


def _lock(portal: Portal, number: str) -> Card:
    """lock_card for the operations: the same lock, only the columns they read. Any
    other attribute of this Card reads None, so it is not handed outside the ledger."""
    row = sql.row("lock_card", sql.pk(portal), number)
    if row is None:
        raise CardNotFound(number)
    card = Card(__no_default__=True)
    card.__data__ = dict(zip(_LOCKED_COLUMNS, row))
    return card


def post(card: Card, kind: str, amount_kop: int, *, key: str, actor: str, now: datetime,
         **fields) -> Entry:
    """Append one entry and move the cached balance with it; never below zero."""
    if amount_kop < 0:
        # Conditional: the rowcount is 0, not a negative balance, if the card can't cover it.
        moved = sql.run("debit_card", amount_kop, sql.timestamp(now), card.id, -amount_kop)
        if moved != 1:
            raise InsufficientBalance(card.balance_kop)
    elif amount_kop > 0:
        sql.run("credit_card", amount_kop, sql.timestamp(now), card.id)
    card.balance_kop += amount_kop
    unknown = fields.keys() - _ENTRY_OPTIONAL.keys()
    if unknown:
        raise TypeError(f"post() got unexpected entry fields: {sorted(unknown)}")
    data = {**_ENTRY_OPTIONAL, **fields}
    reverses = data["reverses"]
    data["reverses"] = sql.pk(reverses)
    entry_id = sql.insert("insert_entry", card.portal_id, card.id, key, kind, amount_kop,
                          card.balance_kop, data["reference"], data["purchase_kop"],
                          sql.decimal(data["percent"]), data["reverses"], actor, data["comment"],
                          sql.timestamp(now))
    entry = Entry(__no_default__=True)
    entry.__data__ = {"id": entry_id, "portal": card.portal_id, "card": card.id,
                      "operation": None, "idempotency_key": key, "kind": kind,
                      "amount_kop": amount_kop, "balance_after_kop": card.balance_kop,
                      "actor": actor, "created_at": now, **data}
    entry.__rel__["card"] = card
    if isinstance(reverses, Entry):
        entry.__rel__["reverses"] = reverses
    rollups.record(card.portal_id, card.id, kind, amount_kop, now, data["reference"],
                   data["purchase_kop"])
    return entry


def credit(card: Card, kind: str, amount_kop: int, rules, *, key: str, actor: str,
           now: datetime, **fields) -> Entry:
    """A credit that opens a lot, so it can be spent FIFO and expire on time."""
    entry = post(card, kind, amount_kop, key=key, actor=actor, now=now, **fields)
    if amount_kop > 0:
        lots.open_lot(card, entry, amount_kop, now, rules.bonus_lifetime_days)
    return entry


def spend(card: Card, kind: str, amount_kop: int, *, key: str, actor: str, now: datetime,
          **fields) -> Entry:
    """A debit taken from the oldest lots first."""
    if amount_kop > card.balance_kop:
        raise InsufficientBalance(card.balance_kop)
    entry = post(card, kind, -amount_kop, key=key, actor=actor, now=now, **fields)
    lots.take(entry, lots.spendable(card, now), amount_kop)
    return entry


def expire_card(card: Card, now: datetime, actor: str = "system:expiry") -> list[Entry]:
    """Expire the card's lots whose lifetime is over; one entry per lot."""
    entries = []
    for lot in lots.due(card, now):
        key = f"expire:lot{lot.id}:{now.isoformat()}"
        entry = post(card, EXPIRY, -lot.remaining_kop, key=key, actor=actor, now=now,
                     comment=f"Срок действия бонусов истёк (начислены {lot.expires_at:%d.%m.%Y})")
        lots.take(entry, [lot], lot.remaining_kop)
        entries.append(entry)
    return entries


def _check_active(card: Card) -> None:
    if card.status != "active":
        raise CardBlocked(card.number)


def _check_reference(reference) -> str | None:
    if reference is None:
        return None
    if not isinstance(reference, str) or not reference.strip() or len(reference) > REFERENCE_MAX_LEN:
        raise InvalidInput({"reference": f"Строка от 1 до {REFERENCE_MAX_LEN} символов."})
    return reference.strip()


def _summary(card: Card, entry: Entry, **extra) -> dict:
    return {"card_number": card.number, "entry_id": entry.id, "kind": entry.kind,
            "amount_kop": entry.amount_kop, "balance_kop": card.balance_kop, "tier": card.tier,
            "reference": entry.reference, "created_at": entry.created_at.isoformat(), **extra}


@idempotency.retried_on_race
def accrue(portal: Portal, number: str, purchase_kop: int, *, key: str, actor: str,
           reference: str | None = None, comment: str | None = None,
           now: datetime | None = None, lines: list | None = None) -> Outcome:
    """Bonuses for a purchase at the percent of the tier held before it; with product
    `lines` (api.product_rules), each line at its rule's percent or the tier's."""
    key, reference, now = idempotency.check_key(key), _check_reference(reference), now or utcnow()
    request = {"card": number, "purchase_kop": purchase_kop, "reference": reference,
               "comment": comment, **({"lines": [repr(line) for line in lines]} if lines else {})}
    with db.atomic():
        card = _lock(portal, number)
        seen = idempotency.replay(portal, key, ACCRUAL, request)
        if seen:
            return seen
        _check_active(card)
        if reference and (prior_id := _open_accrual_id(card, reference)):
            raise AlreadyAccrued(reference, prior_id)
        rules = rules_mod.load(portal)
        expire_card(card, now)
        tier = rules.tier_for(card.purchases_kop)
        bonus = percent_of(purchase_kop, tier.percent, mode=rules.rounding_mode,
                           step_kop=rules.rounding_step_kop)
        percent, extra = tier.percent, {}
        if lines:
            bonus, percent, extra = product_rules.accrual(lines, tier.percent, purchase_kop, rules)
            comment = comment or extra["explanation"]
        entry = credit(card, ACCRUAL, bonus, rules, key=key, actor=actor, now=now,
                       reference=reference, purchase_kop=purchase_kop, percent=percent,
                       comment=comment)
        tier_before = card.tier
        _add_purchases(card, purchase_kop, rules, now)
        result = _summary(card, entry, percent=str(percent), purchase_kop=purchase_kop,
                          tier_before=tier_before, **extra)
        return idempotency.record(portal, key, ACCRUAL, request, card, result)


@idempotency.retried_on_race
def debit(portal: Portal, number: str, amount_kop: int, *, key: str, actor: str,
          reference: str | None = None, order_kop: int | None = None, partial: bool = False,
          comment: str | None = None, now: datetime | None = None) -> Outcome:
    """Spend bonuses: never below zero, within the order's allowed share, partial only if asked."""
    key, reference, now = idempotency.check_key(key), _check_reference(reference), now or utcnow()
    request = {"card": number, "amount_kop": amount_kop, "reference": reference,
               "order_kop": order_kop, "partial": partial, "comment": comment}
    with db.atomic():
        card = _lock(portal, number)
        seen = idempotency.replay(portal, key, DEBIT, request)
        if seen:
            return seen
        _check_active(card)
        rules = rules_mod.load(portal)
        expire_card(card, now)
        amount = _allowed_debit(card, amount_kop, order_kop, partial, rules)
        entry = spend(card, DEBIT, amount, key=key, actor=actor, now=now, reference=reference,
                      purchase_kop=order_kop, comment=comment)
        result = _summary(card, entry, requested_kop=amount_kop, debited_kop=amount)
        return idempotency.record(portal, key, DEBIT, request, card, result)


def _allowed_debit(card: Card, amount_kop: int, order_kop, partial: bool, rules) -> int:
    amount = amount_kop
    if order_kop is not None:
        cap = percent_of(order_kop, rules.max_debit_share_percent, mode="down", step_kop=1)
        if amount > cap:
            if not partial or cap == 0:
                raise MaxShareExceeded(cap)
            amount = cap
    if amount > card.balance_kop:
        if not partial or card.balance_kop == 0:
            raise InsufficientBalance(card.balance_kop)
        amount = card.balance_kop
    return amount


@idempotency.retried_on_race
def adjust(portal: Portal, number: str, amount_kop: int, *, key: str, actor: str, reason: str,
           now: datetime | None = None) -> Outcome:
    """A manual correction, up or down, always with a reason."""
    key, now = idempotency.check_key(key), now or utcnow()
    if not isinstance(reason, str) or not reason.strip() or len(reason) > COMMENT_MAX_LEN:
        raise InvalidInput({"reason": "Укажите причину корректировки."})
    if amount_kop == 0:
        raise InvalidInput({"amount": "Сумма корректировки не может быть нулевой."})
    request = {"card": number, "amount_kop": amount_kop, "reason": reason}
    with db.atomic():
        card = _lock(portal, number)
        seen = idempotency.replay(portal, key, ADJUSTMENT, request)
        if seen:
            return seen
        rules = rules_mod.load(portal)
        expire_card(card, now)
        if amount_kop > 0:
            entry = credit(card, ADJUSTMENT, amount_kop, rules, key=key, actor=actor, now=now,
                           comment=reason)
        else:
            entry = spend(card, ADJUSTMENT, -amount_kop, key=key, actor=actor, now=now,
                          comment=reason)
        return idempotency.record(portal, key, ADJUSTMENT, request, card, _summary(card, entry))


@idempotency.retried_on_race
def grant(portal: Portal, number: str, kind: str, amount_kop: int, *, key: str, actor: str,
          comment: str, now: datetime | None = None) -> Outcome:
    """A gift (welcome, birthday): a credit with its own lot."""
    key, now = idempotency.check_key(key), now or utcnow()
    request = {"card": number, "amount_kop": amount_kop, "kind": kind}
    with db.atomic():
        card = _lock(portal, number)
        seen = idempotency.replay(portal, key, kind, request)
        if seen:
            return seen
        rules = rules_mod.load(portal)
        entry = credit(card, kind, amount_kop, rules, key=key, actor=actor, now=now,
                       comment=comment)
        return idempotency.record(portal, key, kind, request, card, _summary(card, entry))


def _open_accrual(card: Card, reference: str) -> Entry | None:
    """The deal's accrual that has not been reversed, if any."""
    entry_id = _open_accrual_id(card, reference)
    return None if entry_id is None else Entry.get_by_id(entry_id)


def _open_accrual_id(card: Card, reference: str) -> int | None:
    row = sql.row("open_accrual", card.id, reference, ACCRUAL)
    return None if row is None else row[0]


def _by_reference(card: Card, reference: str, kind: str):
    return (Entry.select()
            .where((Entry.card == card) & (Entry.reference == reference) & (Entry.kind == kind))
            .order_by(Entry.id))


def _is_reversed(entry: Entry) -> bool:
    return Entry.select().where(Entry.reverses == entry).exists()


def _add_purchases(card: Card, delta_kop: int, rules, now: datetime) -> None:
    card.purchases_kop = max(0, card.purchases_kop + delta_kop)
    card.tier = rules.tier_for(card.purchases_kop).name
    sql.run("set_purchases", card.purchases_kop, card.tier, sql.timestamp(now), card.id)
