"""CSV import of existing clients: first a dry run that says what would become of every
line, then the same run applied.

Each line is one client: the card is created (or found by its phone), and what the
client had elsewhere arrives as ONE `import` ledger entry (key `import:card<id>`): its
amount is the balance (a lot expiring on the line's date, or after the bonus
lifetime), its purchase amount the cumulative purchases, which set the tier and grant
nothing. Because the entry's key is per card, applying the same file twice changes
nothing; a second file with other money for an imported card is refused (that is what
an adjustment is for).

Lines are read one at a time and handled in chunks of CHUNK_ROWS, each chunk one
transaction: memory stays flat and a crash loses at most the chunk being written,
which the next run (finding the rest done) completes.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import BinaryIO, Callable

from activities.contacts import fields_update
from api.clock import utcnow
from api.data.csvsource import Dialect, open_rows
from api.db import db
from api.ledger import cards as cards_mod
from api.ledger import lots, sql
from api.ledger import rules as rules_mod
from api.ledger.money import MoneyError, format_kop, parse_kop
from api.ledger.operations import IMPORT, lock_card, post
from api.ledger.phones import PhoneError, is_mobile, normalize
from api.models import Card, Contact, Entry, Portal
from api.outbox import enqueue

CHUNK_ROWS = 500
BATCH_CALLS = 50  # one outbox row is one Bitrix24 batch
PROGRESS_EVERY = 10_000
REFUSALS_KEPT = 200  # kept for the summary on screen; the CSV report has every line
CREATED, UPDATED, UNCHANGED, REFUSED = "created", "updated", "unchanged", "refused"
STATUS_RU = {CREATED: "новая карта", UPDATED: "обновление", UNCHANGED: "без изменений",
             REFUSED: "отклонена"}
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}")
PROFILE = ("last_name", "first_name", "middle_name", "email", "birthdate", "client_category")
COMMENT = "Остаток, перенесённый при импорте"


@dataclass(frozen=True)
class Outcome:
    line: int
    phone: str
    status: str
    reason_code: str | None = None
    reason: str | None = None
    card: str | None = None


@dataclass
class Line:
    """A line that parsed: what it asks for."""

    line: int
    number: str
    profile: dict
    balance_kop: int
    purchases_kop: int
    expiry: date | None
    contact_id: int | None = None  # known when the line is a Bitrix24 contact


@dataclass
class Report:
    dialect: Dialect
    applied: bool
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    refusals: list[Outcome] = field(default_factory=list)
    lines: int = 0
    balance_kop: int = 0  # what the created and updated lines bring (or would bring)

    def add(self, outcome: Outcome, balance_kop: int = 0) -> None:
        self.lines += 1
        self.counts[outcome.status] += 1
        if outcome.status == REFUSED:
            self.reasons[outcome.reason_code] += 1
            if len(self.refusals) < REFUSALS_KEPT:
                self.refusals.append(outcome)
        elif outcome.status in (CREATED, UPDATED):
            self.balance_kop += balance_kop

    def summary(self) -> str:
        verb = "applied" if self.applied else "dry run"
        return (f"Import {verb}: {self.lines:,} lines; {self.counts[CREATED]:,} created, "
                f"{self.counts[UPDATED]:,} updated, {self.counts[UNCHANGED]:,} unchanged, "
                f"{self.counts[REFUSED]:,} refused; balances {format_kop(self.balance_kop)} "
                f"({self.dialect.describe()}).")


def _refused(line: int, phone: str, code: str, reason: str) -> Outcome:
    return Outcome(line, phone, REFUSED, code, reason)


# --- one line ---------------------------------------------------------------------------------

def parse_line(line: int, raw: dict, rules, known: dict | None, today: date) -> Line | Outcome:
    """The line's request, or its refusal (the first problem found)."""
    phone = raw.get("phone", "")
    try:
        number = normalize(phone)
    except PhoneError:
        return _refused(line, phone, "invalid_phone", "Неверный номер телефона.")
    if not is_mobile(number):
        return _refused(line, phone, "landline_phone", "Стационарный номер: карта — мобильный.")
    missing = [f for f in rules.required_fields if f != "phone" and not raw.get(f)]
    if missing:
        return _refused(line, phone, "missing_field", "Не заполнено: " + ", ".join(missing))
    try:
        balance = parse_kop(raw.get("balance") or "0", allow_zero=True, allow_negative=True)
        purchases = parse_kop(raw.get("purchases") or "0", allow_zero=True, allow_negative=True)
        profile = _profile(raw, known)
        expiry = _date(raw.get("expiry"), "expiry")
    except (MoneyError, ValueError) as exc:
        return _refused(line, phone, getattr(exc, "code", "invalid_value"), str(exc))
    if balance < 0:
        return _refused(line, phone, "negative_balance", "Отрицательный баланс.")
    if purchases < 0:
        return _refused(line, phone, "invalid_value", "Отрицательная сумма покупок.")
    if expiry is not None and expiry <= today:
        return _refused(line, phone, "invalid_value", "Срок действия бонусов уже прошёл.")
    contact = str(raw.get("contact_id") or "")
    return Line(line, number, profile, balance, purchases, expiry,
                int(contact) if contact.isdigit() else None)


class UnknownCategory(ValueError):
    code = "unknown_category"


def _profile(raw: dict, known: dict | None) -> dict:
    profile = {}
    for name in ("last_name", "first_name", "middle_name"):
        profile[name] = (raw.get(name) or "")[:Card.last_name.max_length].strip() or None
    email = raw.get("email") or None
    if email and not EMAIL.fullmatch(email):
        raise ValueError("Неверный e-mail.")
    profile["email"] = email
    birthdate = _date(raw.get("birthdate"), "birthdate")
    if birthdate is not None and not date(1900, 1, 1) <= birthdate <= date.today():
        raise ValueError("Неверная дата рождения.")
    profile["birthdate"] = birthdate
    category = raw.get("client_category") or None
    if category and known is not None:
        if category.casefold() not in known:
            raise UnknownCategory(f"Неизвестная категория «{category[:100]}».")
        category = known[category.casefold()]
    profile["client_category"] = category[:100] if category else None
    return profile


def _date(text: str | None, name: str) -> date | None:
    if not text:
        return None
    for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    label = {"birthdate": "дата рождения", "expiry": "срок действия"}[name]
    raise ValueError(f"Неверная дата ({label}): ожидается ГГГГ-ММ-ДД или ДД.ММ.ГГГГ.")


def known_categories(portal: Portal, given: list[str] | None) -> dict | None:
    """casefold → spelling. Given ones, else those the portal's cards carry; None: any."""
    names = [c.strip() for c in given or [] if c.strip()]
    if not names:
        query = (Card.select(Card.client_category).distinct()
                 .where((Card.portal == portal) & Card.client_category.is_null(False)))
        names = [row.client_category for row in query]
    return {name.casefold(): name for name in names} or None


# --- a chunk of lines -------------------------------------------------------------------------

@dataclass
class _State:
    cards: dict[str, Card]
    contacts: dict[str, list[int]]  # phone → contact ids in our copy of the CRM
    by_contact: dict[int, Card]
    imported: dict[int, tuple[int, int]]  # card id → (balance, purchases) imported


def _state(portal: Portal, lines: list[Line]) -> _State:
    numbers = [line.number for line in lines]
    cards = {c.number: c for c in Card.select().where((Card.portal == portal)
                                                      & Card.number.in_(numbers))}
    contacts: dict[str, list[int]] = defaultdict(list)
    for row in Contact.select(Contact.contact_id, Contact.phone).where(
            (Contact.portal == portal) & Contact.phone.in_(numbers)):
        contacts[row.phone].append(row.contact_id)
    contact_ids = [cid for ids in contacts.values() for cid in ids]
    by_contact = {c.contact_id: c for c in Card.select().where(
        (Card.portal == portal) & Card.contact_id.in_(contact_ids))} if contact_ids else {}
    keys = [import_key(card) for card in cards.values()]
    imported = {row.card_id: (row.amount_kop, row.purchase_kop or 0) for row in Entry.select(
        Entry.card, Entry.amount_kop, Entry.purchase_kop).where(
        (Entry.portal == portal) & Entry.idempotency_key.in_(keys))} if keys else {}
    return _State(cards, contacts, by_contact, imported)


def import_key(card: Card) -> str:
    return f"import:card{card.id}"  # no phone in a key: anonymising then has less to rewrite


def _plan(line: Line, state: _State) -> tuple[Outcome, int | None, dict]:
    """(outcome, contact id for a new card, profile fields to fill on an existing one)."""
    card = state.cards.get(line.number)
    if card is None:
        ids = sorted({*state.contacts.get(line.number, []), *([line.contact_id] if line.contact_id
                                                              else [])})
        if len(ids) > 1:
            return _refused(line.line, line.number, "two_contacts",
                            "Этот телефон у нескольких контактов Битрикс24: "
                            + ", ".join(map(str, sorted(ids)))), None, {}
        holder = state.by_contact.get(ids[0]) if ids else None
        if holder is not None:
            return _refused(line.line, line.number, "contact_has_card",
                            f"У контакта {ids[0]} уже есть карта {holder.number}."), None, {}
        return Outcome(line.line, line.number, CREATED, card=line.number), \
            ids[0] if ids else None, {}
    if card.status == "closed":
        return _refused(line.line, line.number, "card_closed",
                        "Карта закрыта (объединена с другой)."), None, {}
    fill = {k: v for k, v in line.profile.items() if v is not None and getattr(card, k) in (None, "")}
    prior = state.imported.get(card.id)
    if prior is not None and prior != (line.balance_kop, line.purchases_kop):
        return _refused(line.line, line.number, "already_imported",
                        f"Уже импортирована с балансом {format_kop(prior[0])} и покупками "
                        f"{format_kop(prior[1])}; исправьте корректировкой."), None, {}
    status = UNCHANGED if prior is not None and not fill else UPDATED
    return Outcome(line.line, line.number, status, card=card.number), None, fill


CARD_COLUMNS = ("portal_id", "number", "contact_id", "tier", "status", "balance_kop",
                "purchases_kop", "created_at", "updated_at", "search_text", "last_name",
                "first_name", "middle_name", "email", "birthdate", "client_category",
                "birthday_md")


def _create_cards(portal: Portal, new: list[tuple[Line, int | None]], rules,
                  now: datetime) -> dict[str, Card]:
    """The chunk's new cards in one executemany (through peewee's query builder 500 rows
    cost more than the rest of the import), read back for their ids. Created in this
    transaction, they need no lock. Values are bound as the ledger binds them (api.ledger.sql)."""
    if not new:
        return {}
    marks = ", ".join(["%s" if sql.dialect().postgres else "?"] * len(CARD_COLUMNS))
    columns = ", ".join(f'"{name}"' for name in CARD_COLUMNS)
    text = f'INSERT INTO "card" ({columns}) VALUES ({marks})'
    stamp, rows = sql.timestamp(now), []
    for line, contact_id in new:
        p = line.profile
        rows.append((portal.id, line.number, contact_id, rules.tiers[0].name, "active", 0, 0,
                     stamp, stamp, cards_mod.search_text(p), p["last_name"], p["first_name"],
                     p["middle_name"], p["email"], p["birthdate"] and sql.day(p["birthdate"]),
                     p["client_category"], cards_mod.month_day(p["birthdate"])))
    db.cursor().executemany(text, rows)
    numbers = [line.number for line, _ in new]
    return {c.number: c for c in Card.select().where((Card.portal == portal)
                                                     & Card.number.in_(numbers))}


def _update(portal: Portal, line: Line, fill: dict, state: _State, rules, actor: str,
            now: datetime) -> None:
    card = state.cards[line.number]
    if fill:
        cards_mod.update_profile(card, fill, now=now)
    if card.id not in state.imported:
        _open(lock_card(portal, card.number), line, rules, actor, now)


def _open(card: Card, line: Line, rules, actor: str, now: datetime) -> None:
    """The one `import` entry: the balance as a lot, the purchases onto the tier (moved in
    the entry's own statement: `post(purchases=…)`)."""
    purchases = card.purchases_kop + line.purchases_kop
    entry = post(card, IMPORT, line.balance_kop, key=import_key(card), actor=actor, now=now,
                 purchases=(purchases, rules.tier_for(purchases).name),
                 purchase_kop=line.purchases_kop, comment=COMMENT)
    if line.balance_kop > 0:
        expires_at = (datetime.combine(line.expiry, time()) if line.expiry
                      else now + timedelta(days=rules.bonus_lifetime_days))
        lots.open_lot(card, entry, line.balance_kop, now, 0, expires_at=expires_at)


def _chunk(portal: Portal, lines: list[Line], rules, apply: bool, actor: str,
           now: datetime) -> list[tuple[Outcome, int]]:
    done, new = [], []
    with db.atomic() if apply else nullcontext():  # a dry run takes no lock and writes nothing
        state = _state(portal, lines)
        for line in lines:
            outcome, contact_id, fill = _plan(line, state)
            if apply and outcome.status == UPDATED:
                _update(portal, line, fill, state, rules, actor, now)
            elif apply and outcome.status == CREATED:
                new.append((line, contact_id))
            existing = state.cards.get(line.number)
            brings = 0 if existing is not None and existing.id in state.imported \
                else line.balance_kop
            done.append((outcome, brings))
        created = _create_cards(portal, new, rules, now)
        for line, _ in new:
            _open(created[line.number], line, rules, actor, now)
        if apply:
            _write_fields(portal, [o.card for o, _ in done if o.status in (CREATED, UPDATED)])
    return done


def _write_fields(portal: Portal, numbers: list[str]) -> None:
    """Our fields (card, balance, tier) onto the contacts of the cards written, 50 to an
    outbox row (one batch); the key is the first card's, unique as cards are imported once."""
    if not numbers or portal.status != "active" or not portal.client_endpoint:
        return
    cards = list(Card.select().where((Card.portal == portal) & Card.number.in_(numbers)
                                     & Card.contact_id.is_null(False)).order_by(Card.id))
    for start in range(0, len(cards), BATCH_CALLS):
        group = cards[start:start + BATCH_CALLS]
        enqueue(portal, f"import:fields:card{group[0].id}:{len(group)}",
                {f"c{card.id}": fields_update(card) for card in group})


# --- the whole file ---------------------------------------------------------------------------

def run(portal: Portal, stream: BinaryIO, *, apply: bool, actor: str,
        categories: list[str] | None = None, now: datetime | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
        progress: Callable[[str], None] | None = None) -> Report:
    """Read the CSV once; return the report (every line also goes to `on_outcome`)."""
    dialect, outcomes = outcomes_of(portal, stream, apply=apply, actor=actor,
                                    categories=categories, now=now, progress=progress)
    return report_of(dialect, apply, outcomes, on_outcome)


def report_of(dialect, apply: bool, outcomes, on_outcome=None) -> Report:
    """Sum the outcomes up (the dialect, or any source with a describe(), heads it)."""
    report = Report(dialect, apply)
    for outcome, brings in outcomes:
        report.add(outcome, brings)
        if on_outcome is not None:
            on_outcome(outcome)
    return report


def outcomes_of(portal: Portal, stream: BinaryIO, *, apply: bool, actor: str,
                categories: list[str] | None = None, now: datetime | None = None,
                progress: Callable[[str], None] | None = None):
    """The file's dialect, and its lines' (outcome, balance it brings) one chunk at a time."""
    dialect, rows = open_rows(stream)
    return dialect, line_outcomes(portal, rows, apply=apply, actor=actor, categories=categories,
                                  now=now, progress=progress)


def line_outcomes(portal: Portal, rows, *, apply: bool, actor: str,
                  categories: list[str] | None = None, now: datetime | None = None,
                  progress: Callable[[str], None] | None = None):
    """(outcome, balance it brings) of each (line number, {field: text}) of any source."""
    now = now or utcnow()
    rules, known = rules_mod.load(portal), known_categories(portal, categories)

    def outcomes():
        seen, pending, lines = {}, [], 0
        for number, raw in rows:
            lines += 1
            parsed = parse_line(number, raw, rules, known, now.date())
            if isinstance(parsed, Outcome):
                yield parsed, 0
            elif parsed.number in seen:
                yield _refused(number, parsed.number, "duplicate_phone",
                               f"Этот телефон уже был в строке {seen[parsed.number]}."), 0
            else:
                seen[parsed.number] = number
                pending.append(parsed)
                if len(pending) >= CHUNK_ROWS:
                    yield from _chunk(portal, pending, rules, apply, actor, now)
                    pending.clear()
            if progress and lines % PROGRESS_EVERY == 0:
                progress(f"{lines:,} lines read…")
        yield from _chunk(portal, pending, rules, apply, actor, now)
    return outcomes()


REPORT_HEADER = ("line", "phone", "status", "status_ru", "reason_code", "reason", "card")


def report_row(outcome: Outcome) -> list:
    status_ru = STATUS_RU[outcome.status]
    return [outcome.line, outcome.phone, outcome.status, status_ru, outcome.reason_code or "",
            outcome.reason or "", outcome.card or ""]
