"""The daily birthday run of one portal, on the portal's own date.

- Birthday tomorrow, card: the manager is told to call (name, phone, card, balance, tier).
- Birthday today, card: the client's e-mail, and the birthday bonus if the program has one.
- Birthday tomorrow, no card: the manager is asked to issue one.
- A card without a birthdate: the manager is asked to find it out, at most every 90 days.
29 February birthdays are kept on 28 February in other years. Every message and bonus
has a key of (card or contact, year, kind), so a rerun, a restart mid-run or two racing
schedulers write nothing twice.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from peewee import JOIN

from api.clock import utcnow
from api.db import db
from api.ledger import operations
from api.ledger.idempotency import system
from api.ledger import rules as rules_mod
from api.models import Card, Contact, Notification, Portal
from notifications import notices
from notifications import settings as settings_mod
from notifications.context import card_context
from notifications.followup import queue_follow_up
from notifications.templates import format_bonus
from scheduler.chat import enqueue_chat

NO_BIRTHDATE_EVERY = timedelta(days=90)


@dataclass
class Plan:
    """What the run does (or, dry, would do): one line per message or bonus, each naming
    the client (name and card number) and the action: manager call, e-mail, bonus."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


def month_days(day: date) -> list[int]:
    """The birthdays celebrated on `day`: 28 Feb also takes 29 Feb outside leap years."""
    days = [day.month * 100 + day.day]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        days.append(229)
    return days


def run(portal: Portal, today: date, *, dry_run: bool = False, now: datetime | None = None) -> Plan:
    now, plan = now or utcnow(), Plan()
    settings, rules = settings_mod.load(portal), rules_mod.load(portal)
    tomorrow = today + timedelta(days=1)
    for card in _cards(portal, month_days(tomorrow)):
        _call_tomorrow(portal, card, tomorrow, settings, plan, dry_run, now)
    for card in _cards(portal, month_days(today)):
        _celebrate(portal, card, today, settings, rules, plan, dry_run, now)
    for contact in _contacts_without_card(portal, month_days(tomorrow)):
        _ask_for_card(portal, contact, tomorrow, settings, plan, dry_run, now)
    for card in _cards_without_birthdate(portal, now):
        _ask_for_birthdate(portal, card, today, settings, plan, dry_run, now)
    return plan


def client(card: Card) -> str:
    """How a plan line names a client: «Петрова Анна Сергеевна (card 79161234567)»."""
    return f"{_name(card)} (card {card.number})"


def _name(person) -> str:
    parts = (person.last_name, person.first_name, person.middle_name)
    return " ".join(p for p in parts if p) or "(no name)"


def _cards(portal: Portal, days: list[int]):
    return (Card.select().where((Card.portal == portal) & Card.birthday_md.in_(days)
                                & (Card.status == "active")).order_by(Card.id))


def _contacts_without_card(portal: Portal, days: list[int]):
    return (Contact.select().join(Card, JOIN.LEFT_OUTER, on=(
        (Card.portal == Contact.portal) & (Card.contact_id == Contact.contact_id)))
        .where((Contact.portal == portal) & Contact.birthday_md.in_(days) & Card.id.is_null())
        .order_by(Contact.id))


def _cards_without_birthdate(portal: Portal, now: datetime):
    recent = (Notification.select(Notification.card).where(
        (Notification.portal == portal) & (Notification.template == "no_birthdate_manager")
        & (Notification.created_at > now - NO_BIRTHDATE_EVERY)))
    return (Card.select().where((Card.portal == portal) & Card.birthdate.is_null()
                                & (Card.status == "active") & Card.manager_id.is_null(False)
                                & Card.id.not_in(recent)).order_by(Card.id))


def _call_tomorrow(portal, card, tomorrow, settings, plan, dry_run, now):
    if not (settings["notices"]["birthday_manager"] and card.manager_id):
        return
    plan.add(f"{client(card)}: manager call, manager {card.manager_id} is told the birthday "
             f"is tomorrow")
    if not dry_run:
        enqueue_chat(portal, card, card.manager_id, "birthday_manager", card_context(card),
                     f"birthday_manager:{card.id}:{tomorrow.year}", settings, now)


def _celebrate(portal, card, today, settings, rules, plan, dry_run, now):
    bonus = rules.birthday_bonus_kop
    if bonus:
        plan.add(f"{client(card)}: birthday bonus {format_bonus(bonus)}")
    if settings["notices"]["birthday_email"] and card.email:
        plan.add(f"{client(card)}: birthday e-mail to {card.email}")
    if dry_run:
        return
    key = system(f"birthday:{card.id}:{today.year}")  # ours: no client key can take it
    with db.atomic():
        if bonus:
            result = operations.grant(portal, card.number, operations.BIRTHDAY, bonus, key=key,
                                      actor="scheduler:birthdays", comment="С днём рождения",
                                      now=now).result
            card = Card.get_by_id(card.id)
            queue_follow_up(portal, card, operations.BIRTHDAY, result, key)
        if settings["notices"]["birthday_email"] and card.email:
            notices.record(portal, card, "birthday_email", card.email,
                           card_context(card, accrued=format_bonus(bonus) if bonus else ""),
                           f"birthday_email:{card.id}:{today.year}", settings, now)


def _ask_for_card(portal, contact, tomorrow, settings, plan, dry_run, now):
    if not (settings["notices"]["birthday_no_card_manager"] and contact.manager_id):
        return
    plan.add(f"{_name(contact)} (contact {contact.contact_id}, no card): manager call, manager "
             f"{contact.manager_id} is asked to issue a card, birthday tomorrow")
    if not dry_run:
        context = {"first_name": contact.first_name or "", "last_name": contact.last_name or "",
                   "phone": contact.phone or ""}
        enqueue_chat(portal, None, contact.manager_id, "birthday_no_card_manager", context,
                     f"birthday_no_card:{contact.contact_id}:{tomorrow.year}", settings, now)


def _ask_for_birthdate(portal, card, today, settings, plan, dry_run, now):
    if not settings["notices"]["no_birthdate_manager"]:
        return
    plan.add(f"{client(card)}: manager call, manager {card.manager_id} is asked for the "
             f"birthdate")
    if not dry_run:
        enqueue_chat(portal, card, card.manager_id, "no_birthdate_manager", card_context(card),
                     f"no_birthdate:{card.id}:{today.isoformat()}", settings, now)
