"""What follows a movement on a card: the client's SMS and e-mail, the manager's chat
notice, and the contact's loyalty fields in Bitrix24.

Called inside the transaction of the movement, so the notices exist exactly when the
movement does. Returns the Bitrix24 calls for the caller to batch (an activity run adds
its event.send; the REST API queues them on their own).
"""
from __future__ import annotations

from activities.contacts import fields_update
from api import versions
from api.ledger.idempotency import as_key
from api.models import Card, Entry, Portal
from api.webhooks import events as webhook_events
from background.outbox import enqueue
from notifications import notices, timeline
from notifications import settings as settings_mod
from notifications.context import card_context
from notifications.templates import format_bonus

CLIENT_NOTICES = {"accrual": ("accrual_sms", "accrual_email"), "debit": ("debit_sms", "debit_email")}


def notice_key(key, name: str) -> str:
    """The key of what follows an operation, derived from its key by hashing
    (api.ledger.idempotency): never another operation's, however long the keys."""
    return "op:" + as_key(key).derive(name)


def follow_up(portal: Portal, card: Card, kind: str, result: dict, key) -> dict:
    webhook_events.movement(portal, card, kind, result, key)  # outbox rows, same transaction
    # The card an operation returns carries the settings token it read (api.versions).
    token = getattr(card, "settings_token", versions.UNKNOWN)
    settings = versions.cached("notify", portal.id, token, lambda: settings_mod.load(portal))
    on = settings["notices"]
    amount = format_bonus(abs(result.get("amount_kop", 0)))
    context = card_context(card, accrued=amount if kind == "accrual" else "",
                           debited=amount if kind == "debit" else "")
    calls = {}
    sms, email = CLIENT_NOTICES.get(kind, (None, None))
    if sms and on.get(sms) and result.get("amount_kop"):
        notices.record(portal, card, sms, card.number, context, notice_key(key, sms), settings,
                       answer=False)
    if email and on.get(email) and result.get("amount_kop"):
        if card.email:
            notices.record(portal, card, email, card.email, context, notice_key(key, email),
                           settings, answer=False)
        elif kind == "accrual" and on.get("missing_email_manager"):
            calls.update(_chat(portal, card, "missing_email_manager", context, key, settings))
    if kind == "accrual" and on.get("accrual_manager") and result.get("amount_kop"):
        calls.update(_chat(portal, card, "accrual_manager", context, key, settings))
    if result.get("tier_before") and result.get("tier") != result.get("tier_before"):
        for name in ("tier_up_sms", "tier_up_email"):
            recipient = card.number if name.endswith("sms") else card.email
            if on.get(name) and recipient:
                notices.record(portal, card, name, recipient, context, notice_key(key, name),
                               settings, answer=False)
    update = fields_update(card)
    if update:
        calls["contact_fields"] = update
    calls.update(_timeline(card, kind, result, settings))
    return calls


def _timeline(card: Card, kind: str, result: dict, settings: dict) -> dict:
    if not settings.get("timeline", True):
        return {}
    calls = {}
    if "comment" not in result and result.get("entry_id"):
        # The reason lives on the entry; older operation results don't repeat it.
        reason = Entry.select(Entry.comment).where(Entry.id == result["entry_id"]).scalar()
        result = {**result, "comment": reason}
    entry = timeline.entry_call(card, kind, result)
    if entry:
        calls["timeline"] = entry
    before = result.get("tier_before")
    if before and before != result.get("tier"):
        tier = timeline.tier_call(card, before)
        if tier:
            calls["timeline_tier"] = tier
    return calls


def _chat(portal, card, name, context, key, settings) -> dict:
    if not card.manager_id:
        return {}
    row = notices.record(portal, card, name, str(card.manager_id), context,
                         notice_key(key, name), settings)
    call = notices.chat_call(row, settings)
    return dict([call]) if call else {}


def queue_follow_up(portal: Portal, card: Card, kind: str, result: dict, key) -> None:
    """For movements outside an activity run: the Bitrix24 calls go out as their own batch."""
    calls = follow_up(portal, card, kind, result, key)
    if portal.client_endpoint and portal.status == "active":
        enqueue(portal, notice_key(key, "outbox"), calls)
