"""Forgetting a client on request (152-FZ): the person is erased, the money is kept.

Erased here: names, phone, e-mail and birthdate on the card, our copy of the contact,
the messages sent to or about them, and every place the phone (the card number) was
written as text: entry and operation records, the outbox, activity answers, webhook
events (a replay then sends the pseudonym), login codes and their rate-limit counters. The card
itself stays with its ledger under a pseudonymous number (`anon` + 16 hex), so the
balance history, the totals and the program's numbers (rollups keyed by card id and
day) do not move. Our fields on the contact in Bitrix24 are cleared through the outbox.
The action is recorded in the audit trail (who, when, why) with the card's id only;
the phone is then free to start a new card.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from peewee import fn

from activities.contacts import UF_BALANCE, UF_CARD, UF_TIER
from api.clock import utcnow
from api.data import audit
from api.db import db
from api.ledger.errors import InvalidInput
from api.ledger.operations import lock_card
from api.models import (ActivityRun, Card, CardMark, Contact, Entry, LoginCode, Notification,
                        Operation, Outbox, Portal, Throttle, WebhookDelivery, WebhookEvent)
from api.outbox import enqueue

ANONYMISED = "anonymised"
PSEUDONYM_PREFIX = "anon"
REASON_MAX_LEN = 500
ERASED = "[удалено]"


def pseudonym() -> str:
    return PSEUDONYM_PREFIX + secrets.token_hex(8)  # 20 characters: the number column's size


def anonymise(portal: Portal, number: str, *, actor: str, reason: str,
              source: str | None = None, now: datetime | None = None) -> Card:
    """Erase the client of card `number`; returns the card under its new number."""
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX_LEN:
        raise InvalidInput({"reason": "Укажите основание (до 500 символов)."})
    now = now or utcnow()
    with db.atomic():
        card = lock_card(portal, number)
        alias = pseudonym()
        needles = [n for n in (card.number, "+" + card.number, card.email) if n]
        _scrub_text(portal, card, needles, alias)
        _scrub_messages(card)
        _scrub_webhooks(portal, card, alias)
        _scrub_login(portal, card)
        _scrub_contact(portal, card)
        Card.update(number=alias, contact_id=None, last_name=None, first_name=None,
                    middle_name=None, email=None, birthdate=None, birthday_md=None,
                    search_text="", status=ANONYMISED, updated_at=now).where(
            Card.id == card.id).execute()
        CardMark.insert(card=card, kind=ANONYMISED, created_at=now,
                        note=contact_tag(portal, card.contact_id) if card.contact_id else None
                        ).on_conflict_ignore().execute()
        audit.record(portal, actor, "card.anonymise", target=audit.card_target(card),
                     source=source, details={"reason": reason.strip()}, now=now)
    return Card.get_by_id(card.id)


def contact_tag(portal: Portal | int, contact_id: int) -> str:
    """What we keep of a forgotten client's contact: enough to recognise it when the sync
    reads it again from the CRM (and not copy it back), not its id in the clear."""
    return "c:" + hashlib.sha256(f"{getattr(portal, 'id', portal)}:{contact_id}".encode()).hexdigest()


def without_forgotten(portal: Portal, rows: list) -> list:
    """The contact rows of a sync page minus those of forgotten clients (scheduler.client_copy)."""
    tags = {contact_tag(portal, int(row["ID"])): row for row in rows if str(row.get("ID")).isdigit()}
    if not tags:
        return rows
    forgotten = {mark.note for mark in CardMark.select(CardMark.note).where(
        (CardMark.kind == ANONYMISED) & CardMark.note.in_(list(tags)))}
    return [row for tag, row in tags.items() if tag not in forgotten] if forgotten else rows


def _replace(model, column, needle: str, alias: str, where):
    """column = REPLACE(column, needle, alias) where it contains the needle (both databases)."""
    return (model.update({column: fn.REPLACE(column, needle, alias)})
            .where(where & column.contains(needle)).execute())


def _scrub_text(portal: Portal, card: Card, needles: list[str], alias: str) -> None:
    """The phone and e-mail as text wherever we wrote them."""
    for needle in needles:
        _replace(Entry, Entry.idempotency_key, needle, alias, Entry.card == card.id)
        _replace(Entry, Entry.comment, needle, alias, Entry.card == card.id)
        _replace(Operation, Operation.result, needle, alias, Operation.card == card.id)
        _replace(Operation, Operation.key, needle, alias, Operation.card == card.id)
        _replace(Outbox, Outbox.calls, needle, alias, Outbox.portal == portal)
        _replace(ActivityRun, ActivityRun.return_values, needle, alias,
                 ActivityRun.portal == portal)
        _replace(ActivityRun, ActivityRun.properties, needle, alias, ActivityRun.portal == portal)
    names = [n for n in (card.last_name, card.first_name, card.middle_name) if n]
    for name in names:  # staff wrote reasons and comments about this client's own entries
        _replace(Entry, Entry.comment, name, ERASED, Entry.card == card.id)
        _replace(Operation, Operation.result, name, ERASED, Operation.card == card.id)
    _scrub_outbox(portal, card, alias, names)


def _scrub_outbox(portal: Portal, card: Card, alias: str, names: list[str]) -> None:
    """Writes to this contact (its fields, its timeline) quote the reasons staff gave,
    names and all. They are found by the contact's id or by the card's new number."""
    markers = [alias]
    if card.contact_id:
        markers += [f'"{key}": {card.contact_id}{end}' for key in ("id", "entityId", "ENTITY_ID")
                    for end in (",", "}")]
    where = Outbox.portal == portal
    found = None
    for marker in markers:
        found = Outbox.calls.contains(marker) if found is None else found | Outbox.calls.contains(marker)
    for row in Outbox.select(Outbox.id, Outbox.calls).where(where & found):
        text = row.calls
        for name in names:
            text = text.replace(name, ERASED)
        if text != row.calls:
            Outbox.update(calls=text).where(Outbox.id == row.id).execute()


def _scrub_webhooks(portal: Portal, card: Card, alias: str) -> None:
    """Events about the client carry the phone and the contact's id; a replay (or a
    delivery still pending) must send neither."""
    _replace(WebhookEvent, WebhookEvent.data, card.number, alias, WebhookEvent.portal == portal)
    if card.contact_id:
        for end in (",", "}"):
            _replace(WebhookEvent, WebhookEvent.data, f'"contact_id": {card.contact_id}{end}',
                     f'"contact_id": null{end}', WebhookEvent.portal == portal)
    WebhookEvent.update(card_number=alias).where(
        (WebhookEvent.portal == portal) & (WebhookEvent.card_number == card.number)).execute()
    WebhookDelivery.update(stream=alias).where(
        (WebhookDelivery.stream == card.number)
        & WebhookDelivery.event.in_(WebhookEvent.select(WebhookEvent.id).where(
            WebhookEvent.portal == portal))).execute()


def _scrub_login(portal: Portal, card: Card) -> None:
    """Login codes and the counters keyed by the phone (api.throttle keys: name:portal:phone)."""
    LoginCode.delete().where((LoginCode.portal == portal) & (
        (LoginCode.card == card.id) | (LoginCode.phone == card.number))).execute()
    Throttle.delete().where(Throttle.key.endswith(f":{portal.id}:{card.number}")).execute()


def _scrub_messages(card: Card) -> None:
    """What we sent to the client or told a manager about them: kept as a count, not a text."""
    Notification.update(recipient=ERASED, subject=None, body=ERASED).where(
        Notification.card == card.id).execute()


def _scrub_contact(portal: Portal, card: Card) -> None:
    # Our copy of the CRM: the contact itself, and any copy carrying the same phone.
    Contact.delete().where((Contact.portal == portal) & (Contact.phone == card.number)).execute()
    if not card.contact_id:
        return
    contact = str(card.contact_id)
    # Activity calls of this contact carried its data in their properties: they are done.
    (ActivityRun.update(properties="{}")
     .where((ActivityRun.portal == portal) & ActivityRun.document_id.contains(f"CONTACT_{contact}")
            & (ActivityRun.status == "done")).execute())
    Contact.delete().where((Contact.portal == portal)
                           & (Contact.contact_id == card.contact_id)).execute()
    if portal.status == "active" and portal.client_endpoint:
        enqueue(portal, f"forget:card{card.id}", {"clear": ("crm.contact.update", {
            "id": card.contact_id, "fields": {UF_CARD: "", UF_BALANCE: "", UF_TIER: ""}})})
