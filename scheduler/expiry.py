"""The daily expiry run of one portal: expire lots past their lifetime (FIFO, as the
ledger spends them) and warn clients before, once per card and expiry date."""
from __future__ import annotations

from datetime import datetime, timedelta

from peewee import fn

from api.clock import utcnow
from api.db import db
from api.ledger import operations
from api.ledger.idempotency import system
from api.models import Card, Lot, Portal
from notifications import notices
from notifications import settings as settings_mod
from notifications.context import card_context
from notifications.followup import queue_follow_up
from notifications.templates import format_bonus
from scheduler.birthdays import Plan


def run(portal: Portal, *, dry_run: bool = False, now: datetime | None = None) -> Plan:
    now, plan = now or utcnow(), Plan()
    settings = settings_mod.load(portal)
    for card_id in _cards_with_due_lots(portal, now):
        _expire(portal, card_id, now, plan, dry_run)
    horizon = now + timedelta(days=settings["expiry_warning_days"])
    for card_id, expires_at, kop in _expiring(portal, now, horizon):
        _warn(portal, Card.get_by_id(card_id), expires_at, kop, settings, plan, dry_run)
    return plan


def _cards_with_due_lots(portal: Portal, now: datetime) -> list[int]:
    return [row.card_id for row in Lot.select(Lot.card).distinct().join(Card).where(
        (Card.portal == portal) & (Lot.remaining_kop > 0) & (Lot.expires_at <= now))]


def _expiring(portal: Portal, now: datetime, horizon: datetime):
    query = (Lot.select(Lot.card, Lot.expires_at, fn.SUM(Lot.remaining_kop).alias("kop"))
             .join(Card).where((Card.portal == portal) & (Lot.remaining_kop > 0)
                               & (Lot.expires_at > now) & (Lot.expires_at <= horizon))
             .group_by(Lot.card, Lot.expires_at).order_by(Lot.card, Lot.expires_at))
    return [(row.card_id, row.expires_at, int(row.kop)) for row in query]


def _expire(portal: Portal, card_id: int, now: datetime, plan: Plan, dry_run: bool) -> None:
    if dry_run:
        plan.add(f"card {card_id}: expire due bonuses")
        return
    with db.atomic():
        card = operations.lock_card(portal, Card.get_by_id(card_id).number)
        entries = operations.expire_card(card, now)
        if entries:
            total = -sum(e.amount_kop for e in entries)
            plan.add(f"card {card.number}: expired {format_bonus(total)}")
            result = {"kind": operations.EXPIRY, "amount_kop": -total, "card_number": card.number}
            queue_follow_up(portal, card, operations.EXPIRY, result,
                            system(f"expiry:{card.id}:{now:%Y-%m-%d}"))


def _warn(portal, card, expires_at, kop, settings, plan, dry_run) -> None:
    context = card_context(card, expiring=format_bonus(kop), expires_on=f"{expires_at:%d.%m.%Y}")
    for name, recipient in (("expiry_warning_sms", card.number),
                            ("expiry_warning_email", card.email)):
        if not (settings["notices"][name] and recipient):
            continue
        plan.add(f"client {recipient}: {format_bonus(kop)} expire on {expires_at:%d.%m.%Y}")
        if not dry_run:
            notices.record(portal, card, name, recipient, context,
                           f"{name}:{card.id}:{expires_at:%Y-%m-%d}", settings)
