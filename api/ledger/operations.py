"""The ledger's writes. Each public function is one transaction that:

1. locks the card (row lock on PostgreSQL; SQLite's IMMEDIATE transaction already
   serialises writers), so concurrent operations on a card run one after another;
2. claims its idempotency key, or replays the first answer if the key was seen
   (writing nothing; api.ledger.idempotency);
3. appends entries and moves the cached balance in the same transaction.

The program's numbers (api.ledger.rollups) are not written here: they are folded from
the committed entries afterwards, so no row is shared by every movement of a portal.

Entries are never updated or deleted; a correction is a new entry.

The statements an operation repeats (the card lock, the balance moves, entries, lots,
the idempotency record) are written out in api.ledger.sql and run as they are; the
Card, Entry and Lot objects passed between these functions are models filled from
those rows with the columns the ledger uses (see `_lock`).
"""
from __future__ import annotations

from datetime import datetime

from peewee import DateField, DateTimeField, IntegrityError

from api.clock import utcnow
from api.db import db, lock_rows
from api.ledger import idempotency, lots, sql
from api.ledger import rules as rules_mod
from api.ledger.errors import (
    AlreadyAccrued,
    CardBlocked,
    CardNotFound,
    InsufficientBalance,
    InvalidInput,
    LedgerError,
    MaxShareExceeded,
)
from api.ledger.idempotency import Claim, Outcome
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


# The order of sql "lock_card"'s columns, each with the conversion its raw value needs
# (SQLite hands dates and times back as text; the rest arrive as Python wants them).
_CARD_FIELDS = [(f.name, sql.reader(f) if isinstance(f, (DateField, DateTimeField)) else None)
                for f in Card._meta.sorted_fields]
# What an entry may carry besides its amount; empty unless given.
_ENTRY_OPTIONAL = {"reference": None, "purchase_kop": None, "percent": None, "reverses": None,
                   "comment": None}


def _lock(portal: Portal, number: str, held_at: datetime | None = None,
          due_at: datetime | None = None) -> Card:
    """lock_card for the operations, in one statement with the portal's settings token
    (`card.settings_token`, for api.versions): the follow-up reuses this very Card.
    With `held_at`, the card's live holds are summed too (`card.held_kop`): in the same
    statement on SQLite, in the next one on PostgreSQL (sql "lock_card_held" says why);
    with `due_at`, the statement says whether a lot is due to expire then (`card.lots_due`)."""
    holds_after = held_at is not None and sql.dialect().postgres
    if held_at is not None and not holds_after:
        row = sql.row("lock_card_held", sql.timestamp(held_at), sql.pk(portal), number)
    elif due_at is not None:
        row = sql.row("lock_card_due", sql.timestamp(due_at), sql.pk(portal), number)
    else:
        row = sql.row("lock_card", sql.pk(portal), number)
    if row is None:
        raise CardNotFound(number)
    extra = "lots_due" if due_at is not None else None
    card = _card(row, "held_kop" if held_at is not None and not holds_after else extra)
    if holds_after:
        card.held_kop = _held(card, held_at)
    return card


def _lock_and_claim(portal: Portal, number: str, key, kind: str, request: dict, *,
                    held_at: datetime | None = None,
                    due_at: datetime | None = None) -> tuple[Card, Claim | Outcome]:
    """`_lock`, then the operation's key claimed (api.ledger.idempotency.claim). On
    PostgreSQL both are one statement that also draws the first entry's id: a round trip
    instead of two, and the entry's INSERT no longer waits for an answer (sql "lock_claim")."""
    if not sql.dialect().postgres:
        card = _lock(portal, number, held_at=held_at, due_at=due_at)
        return card, idempotency.claim(portal, key, kind, request, card)
    digest = idempotency.request_hash(kind, request)
    claiming = (key.scope, key.value, kind, digest, utcnow())
    if due_at is not None:
        row = sql.row("lock_claim_due", due_at, sql.pk(portal), number, *claiming)
    else:
        row = sql.row("lock_claim", sql.pk(portal), number, *claiming)
    if row is None:
        raise CardNotFound(number)
    card = _card(row[:-2], "lots_due" if due_at is not None else None)
    card.locked_here = True  # FOR UPDATE, in this transaction: see post()
    if held_at is not None:  # after the lock, in a statement of its own (sql "card_held")
        card.held_kop = _held(card, held_at)
    return card, idempotency.settle(portal, key, digest, row[-2], entry_id=row[-1])


def _held(card: Card, at: datetime) -> int:
    """What the card's live holds reserve at `at`, read after its lock (sql "card_held")."""
    return int(sql.row("card_held", card.id, sql.timestamp(at))[0])


def read_card(portal: Portal, number: str) -> Card | None:
    """The card by number, unlocked, with its settings token and what its holds reserve
    now (`card.held_kop`): one statement, written out (building this SELECT with the
    query builder cost more than running it)."""
    row = sql.row("read_card", sql.timestamp(utcnow()), sql.pk(portal), number)
    return None if row is None else _card(row, "held_kop")


# The column a lock or read adds after the token, and the Python value of its raw one
# (a SUM is a Decimal on PostgreSQL; EXISTS is 0/1 on SQLite).
_EXTRA = {"held_kop": int, "lots_due": bool}


def _card(row: tuple, extra: str | None = None) -> Card:
    card = Card(__no_default__=True)
    card.__data__ = {name: convert(v) if convert and v is not None else v
                     for (name, convert), v in zip(_CARD_FIELDS, row)}
    card.settings_token = row[len(_CARD_FIELDS)]
    if extra is not None:
        setattr(card, extra, _EXTRA[extra](row[len(_CARD_FIELDS) + 1]))
    return card


def _rules(card: Card):
    return rules_mod.for_card(card)


def post(card: Card, kind: str, amount_kop: int, claim: Claim | None = None, *, actor: str,
         now: datetime, purchases: tuple[int, str] | None = None, key: str | None = None,
         **fields) -> Entry:
    """Append one entry and move the cached balance with it; never below zero.
    `purchases` (total, tier) moves the card's purchases and tier in the same statement.

    Inside an operation the entry's key derives from the operation's claim. A caller that
    keys single entries itself (imports, merges: `key=`, its own prefixed namespace) gets
    a system operation per entry, so the rollups fold its entry like any other."""
    finish_alone = claim is None
    if finish_alone:
        claim = _claim_entry(card, kind, key)
    if amount_kop < 0 and getattr(card, "locked_here", False):
        # The row is this transaction's and its balance the one read with the lock: the
        # UPDATE needs no answer (it goes out with the next statement, with the lock held:
        # a round trip less), and the CHECK of migration 0018 refuses a negative balance.
        if card.balance_kop + amount_kop < 0:
            raise InsufficientBalance(card.balance_kop)
        sql.later("credit_card", amount_kop, sql.timestamp(now), card.id)
    elif amount_kop < 0:
        # Conditional: the rowcount is 0, not a negative balance, if the card can't cover it.
        moved = sql.run("debit_card", amount_kop, sql.timestamp(now), card.id, -amount_kop)
        if moved != 1:
            raise InsufficientBalance(card.balance_kop)
    elif purchases is not None:  # a credit changes the locked row whatever it holds: no
        # answer to wait for (on PostgreSQL it goes out with the entry, sql.later)
        sql.later("credit_purchase", amount_kop, purchases[0], purchases[1],
                  sql.timestamp(now), card.id)
        card.purchases_kop, card.tier = purchases
    elif amount_kop > 0:
        sql.later("credit_card", amount_kop, sql.timestamp(now), card.id)
    card.balance_kop += amount_kop
    unknown = fields.keys() - _ENTRY_OPTIONAL.keys()
    if unknown:
        raise TypeError(f"post() got unexpected entry fields: {sorted(unknown)}")
    data = {**_ENTRY_OPTIONAL, **fields}
    reverses = data["reverses"]
    data["reverses"] = sql.pk(reverses)
    key = key if finish_alone else claim.entry_key()
    values = (card.portal_id, card.id, claim.id, key, kind, amount_kop, card.balance_kop,
              data["reference"], data["purchase_kop"], sql.decimal(data["percent"]),
              data["reverses"], actor, data["comment"], sql.timestamp(now))
    entry_id = claim.drawn_entry_id()
    if entry_id is None:
        entry_id = sql.insert("insert_entry", *values)
    else:  # drawn with the lock (PostgreSQL): nothing waits for this INSERT
        sql.later("insert_entry_id", entry_id, *values)
    entry = Entry(__no_default__=True)
    entry.__data__ = {"id": entry_id, "portal": card.portal_id, "card": card.id,
                      "operation": claim.id, "idempotency_key": key, "kind": kind,
                      "amount_kop": amount_kop, "balance_after_kop": card.balance_kop,
                      "actor": actor, "created_at": now, **data}
    entry.__rel__["card"] = card
    if isinstance(reverses, Entry):
        entry.__rel__["reverses"] = reverses
    if finish_alone:
        idempotency.finish(claim, {"kind": kind, "card_number": card.number, "entry_id": entry_id})
    return entry


def _claim_entry(card: Card, kind: str, key: str | None) -> Claim:
    if not key:
        raise TypeError("post() needs the operation's claim or an entry key")
    claim = idempotency.claim(card.portal_id, idempotency.system(f"entry:{key}"), kind,
                              {"card": card.number}, card)
    if isinstance(claim, Outcome):
        raise IntegrityError(f"entry key already used: {key}")  # as the entry's index would
    return claim


def credit(card: Card, kind: str, amount_kop: int, rules, claim: Claim, *, actor: str,
           now: datetime, **fields) -> Entry:
    """A credit that opens a lot, so it can be spent FIFO and expire on time."""
    entry = post(card, kind, amount_kop, claim, actor=actor, now=now, **fields)
    if amount_kop > 0:
        lots.open_lot(card, entry, amount_kop, now, rules.bonus_lifetime_days)
    return entry


def spend(card: Card, kind: str, amount_kop: int, spendable, claim: Claim, *, actor: str,
          now: datetime, **fields) -> Entry:
    """A debit taken from the oldest of the `spendable` lots first."""
    if amount_kop > card.balance_kop:
        raise InsufficientBalance(card.balance_kop)
    entry = post(card, kind, -amount_kop, claim, actor=actor, now=now, **fields)
    lots.take(entry, spendable, amount_kop)
    return entry


def expire_card(card: Card, now: datetime, actor: str = "system:expiry", claim: Claim | None = None,
                due: list | None = None) -> list[Entry]:
    """Expire the card's lots whose lifetime is over; one entry per lot.

    Inside an operation its claim keys the entries; alone (the daily run) the expiry is
    an operation of its own, keyed by card and time, so a rerun expires nothing twice.
    """
    due = lots.due(card, now) if due is None else due
    if not due:
        return []
    if claim is None:
        key = idempotency.system(f"expiry:{card.id}:{now.isoformat()}")
        claim = idempotency.claim(card.portal_id, key, EXPIRY, {"card": card.number}, card)
        if isinstance(claim, Outcome):
            return []
        entries = _expire_lots(card, due, claim, actor, now)
        idempotency.finish(claim, {"kind": EXPIRY, "card_number": card.number,
                                   "entry_ids": [e.id for e in entries]})
        return entries
    return _expire_lots(card, due, claim, actor, now)


def _expire_lots(card: Card, due, claim: Claim, actor: str, now: datetime) -> list[Entry]:
    entries = []
    for lot in due:
        entry = post(card, EXPIRY, -lot.remaining_kop, claim, actor=actor, now=now,
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
            "reference": entry.reference, "comment": entry.comment,
            "created_at": entry.created_at.isoformat(), **extra}


@idempotency.retried_on_race
def accrue(portal: Portal, number: str, purchase_kop: int, *, key, actor: str,
           reference: str | None = None, comment: str | None = None,
           now: datetime | None = None, lines: list | None = None, follow=None) -> Outcome:
    """Bonuses for a purchase at the percent of the tier held before it; with product
    `lines` (api.product_rules), each line at its rule's percent or the tier's."""
    key, reference, now = idempotency.check_key(key), _check_reference(reference), now or utcnow()
    request = {"card": number, "purchase_kop": purchase_kop, "reference": reference,
               "comment": comment, **({"lines": [repr(line) for line in lines]} if lines else {})}
    with db.atomic():
        card, claim = _lock_and_claim(portal, number, key, ACCRUAL, request, due_at=now)
        if isinstance(claim, Outcome):
            return claim
        _check_active(card)
        if reference and (prior_id := _open_accrual_id(card, reference)):
            raise AlreadyAccrued(reference, prior_id)
        rules = _rules(card)
        if card.lots_due:  # read with the lock: no lot read when none is due
            expire_card(card, now, claim=claim)
        tier = rules.tier_for(card.purchases_kop)
        bonus = percent_of(purchase_kop, tier.percent, mode=rules.rounding_mode,
                           step_kop=rules.rounding_step_kop)
        percent, extra = tier.percent, {}
        if lines:
            bonus, percent, extra = product_rules.accrual(lines, tier.percent, purchase_kop, rules)
            comment = comment or extra["explanation"]
        tier_before = card.tier
        purchases = max(0, card.purchases_kop + purchase_kop)
        entry = credit(card, ACCRUAL, bonus, rules, claim, actor=actor, now=now,
                       reference=reference, purchase_kop=purchase_kop, percent=percent,
                       comment=comment, purchases=(purchases, rules.tier_for(purchases).name))
        result = _summary(card, entry, percent=str(percent), purchase_kop=purchase_kop,
                          tier_before=tier_before, **extra)
        return idempotency.finish(claim, result, card, follow)


@idempotency.retried_on_race
def debit(portal: Portal, number: str, amount_kop: int, *, key, actor: str,
          reference: str | None = None, order_kop: int | None = None, partial: bool = False,
          comment: str | None = None, now: datetime | None = None, follow=None) -> Outcome:
    """Spend bonuses: never below zero, within the order's allowed share, partial only if asked."""
    key, reference, now = idempotency.check_key(key), _check_reference(reference), now or utcnow()
    request = {"card": number, "amount_kop": amount_kop, "reference": reference,
               "order_kop": order_kop, "partial": partial, "comment": comment}
    with db.atomic():
        # What holds reserve is not spendable: on SQLite read with the lock, on PostgreSQL
        # with the oldest lot (_debit_oldest_lot), in either case after the lock.
        held_at = None if sql.dialect().postgres else now
        card, claim = _lock_and_claim(portal, number, key, DEBIT, request, held_at=held_at)
        if isinstance(claim, Outcome):
            return claim
        _check_active(card)
        rules = _rules(card)
        fields = {"reference": reference, "purchase_kop": order_kop, "comment": comment}
        entry = _debit_oldest_lot(card, amount_kop, order_kop, partial, rules, claim, actor,
                                  now, fields)
        if entry is None:  # the long way: expire what is due, then spend oldest first
            spendable = _expire_due(card, now, claim)
            amount = _allowed_debit(card, amount_kop, order_kop, partial, rules, card.held_kop)
            entry = spend(card, DEBIT, amount, spendable, claim, actor=actor, now=now, **fields)
        result = _summary(card, entry, requested_kop=amount_kop, debited_kop=-entry.amount_kop)
        return idempotency.finish(claim, result, card, follow)


def _debit_oldest_lot(card: Card, amount_kop: int, order_kop, partial: bool, rules,
                      claim: Claim, actor: str, now: datetime, fields: dict) -> Entry | None:
    """The common debit in fewer statements: the oldest live lot is not due (so none is)
    and covers the amount. None, with nothing written, sends the debit the long way,
    with `card.held_kop` known.

    A card locked without its holds (PostgreSQL) has them summed with the lot's take: the
    amount is worked out as if nothing were held, and taken only if it also fits the
    balance less the holds, in which case the holds changed nothing (_allowed_debit
    caps or refuses only past that)."""
    held = getattr(card, "held_kop", None)
    try:
        amount = _allowed_debit(card, amount_kop, order_kop, partial, rules, held or 0)
    except LedgerError:  # decided the long way, on the balance left after expiry
        if held is None:
            card.held_kop = _held(card, now)
        return None
    if held is None:
        card.held_kop, lot_id = lots.held_take_oldest(card, amount, now)
    else:
        lot_id = lots.take_oldest(card, amount, now)
    if lot_id is None:
        return None
    entry = post(card, DEBIT, -amount, claim, actor=actor, now=now, **fields)
    lots.taken(entry, lot_id, amount)
    return entry


def _expire_due(card: Card, now: datetime, claim: Claim) -> list:
    """Expire what is due and return the lots left to spend (one read for both)."""
    due, spendable = lots.split(lots.live(card), now)
    expire_card(card, now, claim=claim, due=due)
    return spendable


def _allowed_debit(card: Card, amount_kop: int, order_kop, partial: bool, rules,
                   held_kop: int = 0) -> int:
    """What the debit may take: within the order's share and what holds leave free."""
    amount, available = amount_kop, card.balance_kop - held_kop
    if order_kop is not None:
        cap = percent_of(order_kop, rules.max_debit_share_percent, mode="down", step_kop=1)
        if amount > cap:
            if not partial or cap == 0:
                raise MaxShareExceeded(cap)
            amount = cap
    if amount > available:
        if not partial or available <= 0:
            raise InsufficientBalance(max(available, 0))
        amount = available
    return amount


@idempotency.retried_on_race
def adjust(portal: Portal, number: str, amount_kop: int, *, key, actor: str, reason: str,
           now: datetime | None = None, follow=None) -> Outcome:
    """A manual correction, up or down, always with a reason."""
    key, now = idempotency.check_key(key), now or utcnow()
    if not isinstance(reason, str) or not reason.strip() or len(reason) > COMMENT_MAX_LEN:
        raise InvalidInput({"reason": "Укажите причину корректировки."})
    if amount_kop == 0:
        raise InvalidInput({"amount": "Сумма корректировки не может быть нулевой."})
    request = {"card": number, "amount_kop": amount_kop, "reason": reason}
    with db.atomic():
        card, claim = _lock_and_claim(portal, number, key, ADJUSTMENT, request)
        if isinstance(claim, Outcome):
            return claim
        rules = _rules(card)
        spendable = _expire_due(card, now, claim)
        if amount_kop > 0:
            entry = credit(card, ADJUSTMENT, amount_kop, rules, claim, actor=actor, now=now,
                           comment=reason)
        else:
            entry = spend(card, ADJUSTMENT, -amount_kop, spendable, claim, actor=actor, now=now,
                          comment=reason)
        return idempotency.finish(claim, _summary(card, entry), card, follow)


@idempotency.retried_on_race
def grant(portal: Portal, number: str, kind: str, amount_kop: int, *, key, actor: str,
          comment: str, now: datetime | None = None, follow=None) -> Outcome:
    """A gift (welcome, birthday): a credit with its own lot."""
    key, now = idempotency.check_key(key), now or utcnow()
    request = {"card": number, "amount_kop": amount_kop, "kind": kind}
    with db.atomic():
        card, claim = _lock_and_claim(portal, number, key, kind, request)
        if isinstance(claim, Outcome):
            return claim
        entry = credit(card, kind, amount_kop, _rules(card), claim, actor=actor, now=now,
                       comment=comment)
        return idempotency.finish(claim, _summary(card, entry), card, follow)


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
