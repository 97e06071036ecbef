"""Cards: created from a contact's data, found by number, phone or contact, blocked."""
from __future__ import annotations

from datetime import date, datetime

from peewee import IntegrityError

from api.clock import utcnow
from api.db import db
from api.ledger import rules as rules_mod
from api.ledger import text
from api.ledger.idempotency import system
from api.ledger.errors import CardExists, CardNotFound, InvalidInput, MissingFields
from api.ledger.operations import WELCOME, grant, read_card
from api.ledger.phones import PhoneError, normalize
from api.models import Card, Portal
from api.webhooks import events as webhook_events

PROFILE_FIELDS = ("last_name", "first_name", "middle_name", "client_category", "email",
                  "birthdate", "manager_id")
SEARCH_MAX_LEN = 100
PAGE_MAX = 100


def missing_fields(data: dict, rules) -> list[str]:
    return [name for name in rules.required_fields if _blank(data.get(name))]


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def card_number(phone) -> str:
    try:
        return normalize(phone)
    except PhoneError as exc:
        raise InvalidInput({"phone": str(exc)}) from None


def create_card(portal: Portal, data: dict, *, actor: str,
                now: datetime | None = None) -> tuple[Card, bool]:
    """Issue a card; (card, False) when this contact or phone already has this very card.

    A phone held by another contact is a conflict naming that contact.
    """
    now = now or utcnow()
    rules = rules_mod.load(portal)
    missing = missing_fields(data, rules)
    if missing:
        raise MissingFields(missing)
    number = card_number(data["phone"])
    contact_id = data.get("contact_id")
    try:
        with db.atomic():
            existing = _existing(portal, number, contact_id)
            if existing:
                return existing, False
            profile = _profile(data)
            card = Card.create(portal=portal, number=number, contact_id=contact_id,
                               tier=rules.tiers[0].name, created_at=now, updated_at=now,
                               search_text=search_text(profile), **profile)
            if rules.welcome_bonus_kop > 0:
                grant(portal, number, WELCOME, rules.welcome_bonus_kop,
                      key=system(f"welcome:{number}"),
                      actor=actor, comment="Приветственные бонусы", now=now)
            webhook_events.card_created(portal, card.id)
    except IntegrityError:
        # Another request issued it between our look and our insert: answer as if we had looked later.
        existing = _existing(portal, number, contact_id)
        if existing is None:
            raise
        return existing, False
    return Card.get_by_id(card.id), True


def _existing(portal: Portal, number: str, contact_id: int | None) -> Card | None:
    by_number = Card.get_or_none((Card.portal == portal) & (Card.number == number))
    if by_number is not None:
        if contact_id is None or by_number.contact_id in (None, contact_id):
            return by_number
        raise CardExists(number, by_number.contact_id)
    if contact_id is not None:
        # The contact's phone changed since its card was issued: it keeps its card.
        return Card.get_or_none((Card.portal == portal) & (Card.contact_id == contact_id))
    return None


def _profile(data: dict) -> dict:
    profile = {k: data.get(k) for k in PROFILE_FIELDS if k in data}
    for key, value in list(profile.items()):
        if isinstance(value, str):  # CRM text may hold a NUL, which PostgreSQL refuses
            profile[key] = text.clean(value).strip() or None
    if isinstance(profile.get("birthdate"), datetime):
        profile["birthdate"] = profile["birthdate"].date()
    if profile.get("birthdate") is not None and not isinstance(profile["birthdate"], date):
        raise InvalidInput({"birthdate": "Ожидается дата."})
    if "birthdate" in profile:
        profile["birthday_md"] = month_day(profile["birthdate"])
    for key, value in profile.items():
        limit = getattr(Card._meta.fields[key], "max_length", None)
        if limit and isinstance(value, str) and len(value) > limit:
            profile[key] = value[:limit]  # CRM text can outgrow our columns; PostgreSQL refuses
    return profile


def month_day(birthdate: date | None) -> int | None:
    return birthdate.month * 100 + birthdate.day if birthdate else None


def search_text(card_or_data) -> str:
    get = card_or_data.get if isinstance(card_or_data, dict) else lambda k: getattr(card_or_data, k)
    parts = (get("last_name"), get("first_name"), get("middle_name"), get("email"))
    return " ".join(p for p in parts if p).casefold()


def update_profile(card: Card, data: dict, *, now: datetime | None = None) -> Card:
    """Copy the contact's current data (names, e-mail, birthdate, manager) onto the card."""
    changes = _profile(data)
    if changes:
        merged = {k: changes.get(k, getattr(card, k)) for k in PROFILE_FIELDS}
        changes.update(updated_at=now or utcnow(), search_text=search_text(merged))
        Card.update(**changes).where(Card.id == card.id).execute()
    return Card.get_by_id(card.id)


def get_card(portal: Portal, number: str) -> Card:
    card = read_card(portal, number)
    if card is None:
        raise CardNotFound(number)
    return card


def find_by_phone(portal: Portal, phone) -> Card:
    return get_card(portal, card_number(phone))


def find_by_contact(portal: Portal, contact_id: int) -> Card:
    card = Card.get_or_none((Card.portal == portal) & (Card.contact_id == contact_id))
    if card is None:
        raise CardNotFound(f"контакт {contact_id}")
    return card


def set_status(portal: Portal, number: str, status: str, *, now: datetime | None = None) -> Card:
    card = get_card(portal, number)
    Card.update(status=status, updated_at=now or utcnow()).where(Card.id == card.id).execute()
    return Card.get_by_id(card.id)


def search(portal: Portal, query: str | None, *, page: int, per_page: int, where=None):
    """Cards matching a phone in any format, a card number or part of a name; newest first.
    `where` narrows further (the numbers page links to the clients behind a figure)."""
    cards = Card.select().where(Card.portal == portal)
    if where is not None:
        cards = cards.where(where)
    if query:
        cards = cards.where(_matches(query[:SEARCH_MAX_LEN]))
    per_page = max(1, min(per_page, PAGE_MAX))
    rows = list(cards.order_by(Card.id.desc()).offset((max(page, 1) - 1) * per_page)
                .limit(per_page + 1))
    return rows[:per_page], len(rows) > per_page


def _matches(query: str):
    text = query.strip()
    try:
        return Card.number == normalize(text)
    except PhoneError:
        pass
    digits = "".join(ch for ch in text if ch.isdigit())
    if digits and len(digits) == len(text.replace(" ", "")):
        return Card.number.contains(digits)
    return Card.search_text.contains(text.casefold())
