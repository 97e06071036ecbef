"""When contacts are merged or deleted in Bitrix24, their cards follow.

Bitrix24 has no merge event: a merge is an update of the survivor and a delete of the
others (scheduler.contact_deletes finds the survivor by the card's phone). Here:

- `follow`: the card of a deleted contact goes to the survivor. If the survivor has no
  card, the card is re-keyed to it. If it has one, the two become one: `merge_cards`.
- `merge_cards`: the balance leaves the closed card and arrives on the remaining one as
  pairs of `transfer` entries, one pair per lot so each lot's expiry is kept, and the
  history of both stays whole; purchases move too (they make the tier), and so do live
  holds (they reserve part of that balance). The closed card is
  marked and points to the one that remains. Both entries have keys made of the card
  ids, and a closed card is never merged again: a replayed event moves nothing.
- `orphan`: a deleted contact with no survivor: the card is blocked and marked, its
  ledger kept.
Each tells the card's manager in chat once (the notice's key is per card and cause).
"""
from __future__ import annotations

from datetime import datetime

from activities.contacts import UF_BALANCE, UF_CARD, UF_TIER, fields_update
from api.clock import utcnow
from api.data import audit
from api.db import db
from api.ledger import lots, sql
from api.ledger import rules as rules_mod
from api.ledger.errors import Conflict
from api.ledger.operations import TRANSFER, expire_card, lock_card, post
from api.models import Card, CardMark, Hold, Lot, Portal
from api.outbox import enqueue
from api.webhooks import events as webhook_events
from notifications import notices
from notifications import settings as notice_settings

CLOSED, MERGED, CONTACT_DELETED = "closed", "merged", "contact_deleted"


class CannotMerge(Conflict):
    code = "cannot_merge"


def follow(portal: Portal, card: Card, survivor_id: int, deleted_id: int, *, actor: str,
           now: datetime | None = None) -> str:
    """The contact of `card` was merged into `survivor_id`; returns what was done."""
    now = now or utcnow()
    with db.atomic():
        card = Card.get_by_id(card.id)
        if card.status == CLOSED:
            return "already merged"
        other = Card.get_or_none((Card.portal == portal) & (Card.contact_id == survivor_id))
        if other is None:
            Card.update(contact_id=survivor_id, updated_at=now).where(Card.id == card.id).execute()
            _write_fields(portal, f"merge:card{card.id}:c{survivor_id}:fields",
                          Card.get_by_id(card.id), None)
            _tell(portal, card, f"merge:card{card.id}:c{survivor_id}",
                  f"Контакт {deleted_id} объединён с контактом {survivor_id}: бонусная карта "
                  f"#{card.id} теперь у контакта {survivor_id}.", now)
            return "re-keyed"
        if other.id == card.id:
            return "already there"
        merge_cards(portal, card, other, actor=actor, now=now)
        return "merged"


def merge_cards(portal: Portal, source: Card, target: Card, *, actor: str,
                now: datetime | None = None) -> Card:
    """Close `source` into `target`: balance, lots and purchases move; history stays."""
    now = now or utcnow()
    if source.id == target.id:
        raise CannotMerge("Карту нельзя объединить саму с собой.")
    with db.atomic():
        # Lock in id order, so two merges of the same pair can't wait on each other.
        first, second = sorted((source, target), key=lambda c: c.id)
        locked = {c.id: lock_card(portal, c.number) for c in (first, second)}
        source, target = locked[source.id], locked[target.id]
        if source.status == CLOSED:
            return target  # merged before: a replayed event moves nothing
        if target.status == CLOSED:
            raise CannotMerge(f"Карта #{target.id} закрыта.")
        expire_card(source, now)  # what is past its lifetime expires where it was earned
        _transfer(portal, source, target, actor, now)
        moved = _move_holds(source, target, now)
        Card.update(status=CLOSED, contact_id=None, updated_at=now).where(
            Card.id == source.id).execute()
        _write_fields(portal, f"merge:card{source.id}:fields", Card.get_by_id(target.id),
                      source.contact_id if source.contact_id != target.contact_id else None)
        CardMark.insert(card=source, kind=MERGED, other=target, created_at=now
                        ).on_conflict_ignore().execute()
        audit.record(portal, actor, "card.merge", target=audit.card_target(target),
                     details={"closed": audit.card_target(source), "holds_moved": moved},
                     now=now)
        webhook_events.card_merged(portal, source, target.id)
        _tell(portal, target, f"merge:card{source.id}:into{target.id}",
              f"Карты клиента объединены: карта #{source.id} закрыта, её бонусы и покупки "
              f"перенесены на карту #{target.id}.", now)
    return Card.get_by_id(target.id)


def _transfer(portal: Portal, source: Card, target: Card, actor: str, now: datetime) -> None:
    """Each live lot moves as a pair of `transfer` entries: out of `source`'s lot, into a
    new lot of `target` with the same expiry (a lot belongs to one entry, so one pair per
    lot keeps every expiry date exact)."""
    live = list(Lot.select(Lot.id, Lot.remaining_kop, Lot.expires_at)
                .where((Lot.card == source.id) & (Lot.remaining_kop > 0) & (Lot.expires_at > now))
                .order_by(Lot.expires_at, Lot.id))
    if sum(lot.remaining_kop for lot in live) != source.balance_kop:
        raise CannotMerge(f"Остаток карты #{source.id} не сходится с её лотами.")
    for lot in live:
        key, amount = f"merge:card{source.id}:lot{lot.id}", lot.remaining_kop  # take() moves it
        out = post(source, TRANSFER, -amount, key=key + ":out", actor=actor, now=now,
                   reference=f"card{target.id}", comment=f"Перенесено на карту #{target.id}")
        lots.take(out, [lot], amount)
        into = post(target, TRANSFER, amount, key=key + ":in", actor=actor, now=now,
                    reference=f"card{source.id}", comment=f"Перенесено с карты #{source.id}")
        lots.open_lot(target, into, amount, now, 0, expires_at=lot.expires_at)
    purchases = target.purchases_kop + source.purchases_kop
    sql.run("set_purchases", purchases, rules_mod.load(portal).tier_for(purchases).name,
            sql.timestamp(now), target.id)


def _move_holds(source: Card, target: Card, now: datetime) -> int:
    """Live holds follow the bonuses they reserve: the survivor's available balance counts
    them, and a capture or release (by hold id) acts on the survivor. Lapsed or closed
    holds stay in the closed card's history."""
    return Hold.update(card=target.id).where(
        (Hold.card == source.id) & (Hold.status == "active") & (Hold.expires_at > now)).execute()


def orphan(portal: Portal, card: Card, deleted_id: int, *, now: datetime | None = None) -> bool:
    """The contact is gone and nobody took its phone: block and mark the card, once."""
    now = now or utcnow()
    with db.atomic():
        if CardMark.select().where((CardMark.card == card)
                                   & (CardMark.kind == CONTACT_DELETED)).exists():
            return False  # told once already
        CardMark.create(card=card, kind=CONTACT_DELETED, created_at=now,
                        note=f"контакт {deleted_id} удалён в Битрикс24")
        Card.update(status="blocked", updated_at=now).where(Card.id == card.id).execute()
        _tell(portal, card, f"contact_deleted:card{card.id}",
              f"Контакт {deleted_id} удалён в Битрикс24. Бонусная карта #{card.id} "
              f"заблокирована, история бонусов сохранена.", now)
    return True


def _write_fields(portal: Portal, key: str, card: Card, cleared_contact: int | None) -> None:
    """Our fields on the contacts: the remaining card's new balance and tier; none on a
    contact whose card was closed (a merge by hand leaves that contact in the CRM)."""
    calls = {}
    update = fields_update(card)
    if update:
        calls["fields"] = update
    if cleared_contact:
        calls["clear"] = ("crm.contact.update", {"id": cleared_contact, "fields": {
            UF_CARD: "", UF_BALANCE: "", UF_TIER: ""}})
    if calls and portal.client_endpoint and portal.status == "active":
        enqueue(portal, key, calls)


def _tell(portal: Portal, card: Card, key: str, text: str, now: datetime) -> None:
    """A chat notice to the card's manager (or the installer), queued with the change."""
    user_id = card.manager_id or portal.installed_by_user_id
    if not user_id:
        return
    settings = notice_settings.load(portal)
    row = notices.insert(portal, card, key, "chat", "data_merge", str(user_id), None, text,
                         created_at=now)
    call = notices.chat_call(row, settings)
    if call and portal.client_endpoint and portal.status == "active":
        enqueue(portal, f"notice:{row.id}", dict([call]))
