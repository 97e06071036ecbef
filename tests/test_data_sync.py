"""Staying in step with the CRM: offline events drained (reserve, process, confirm), so a
contact changed while we were down is synced; merges move a card's balance and history
exactly once, replays included; a deleted contact's card is blocked and kept."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from activities.portals import B24Settings
from activities.registration import register
from api.data import merges
from api.ledger import cards, operations
from api.models import (B24Event, Card, CardMark, Entry, Lot, Notification, OfflineQueue, Outbox)
from scheduler.worker import Worker

NOW = datetime(2026, 3, 2, 9, 0)
LIMIT_503 = (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})


@pytest.fixture
def crm(app, b24, installed):
    """The portal after install: offline queues bound; contacts 42 and 43 with cards."""
    from activities.portals import client_for

    settings = B24Settings.from_config(app.config)
    assert register(client_for(installed, settings), settings, 1).offline == [
        "ONCRMCONTACTUPDATE (offline)", "ONCRMCONTACTDELETE (offline)"]
    OfflineQueue.create(portal=installed, updated_at=NOW - timedelta(hours=1))  # polled before
    b24.add_contact(42)
    b24.add_contact(43, NAME="Ольга", LAST_NAME="Смирнова",
                    PHONE=[{"ID": "5", "VALUE_TYPE": "MOBILE", "VALUE": "+7 916 765-43-21"}])
    return installed


def card_for(portal, contact_id, phone, earn_kop=0):
    card, _ = cards.create_card(portal, {"phone": phone, "last_name": "Петрова",
                                         "first_name": "Анна", "client_category": "Врач",
                                         "contact_id": contact_id, "manager_id": 7},
                                actor="t", now=NOW - timedelta(days=10))
    if earn_kop:
        operations.adjust(portal, card.number, earn_kop, key=f"earn{card.id}", actor="t",
                          reason="начальный", now=NOW - timedelta(days=5))
    return Card.get_by_id(card.id)


def tick(app, now=NOW):
    """A tick at least one poll interval after the one before."""
    Worker(app).tick(now=now)
    OfflineQueue.update(updated_at=now - timedelta(hours=1)).execute()


def test_a_contact_changed_while_we_were_down_is_synced_from_the_offline_queue(app, b24, crm):
    card = card_for(crm, 42, "+79161234567")
    b24.contacts[42]["LAST_NAME"] = "Иванова"  # edited while the service was stopped
    b24.queue_offline("ONCRMCONTACTUPDATE", 42)
    tick(app)
    assert Card.get_by_id(card.id).last_name == "Иванова"
    assert b24.offline_queue == [] and all(not r for r in b24._reserved.values())
    assert OfflineQueue.get().process_id is None
    assert b24.sent("event.offline.get")[0]["clear"] == "0" or \
        str(b24.sent("event.offline.get")[0]["clear"]) == "0"


def test_a_batch_not_confirmed_is_asked_for_again_and_applied_once(app, b24, crm):
    card = card_for(crm, 42, "+79161234567")
    b24.contacts[42]["LAST_NAME"] = "Иванова"
    b24.queue_offline("ONCRMCONTACTUPDATE", 42)
    b24.failures["event.offline.clear"] = [LIMIT_503]  # we "crash" before the confirmation
    tick(app)
    reserved = OfflineQueue.get().process_id
    assert reserved and b24._reserved[reserved]  # still reserved in the portal
    tick(app, NOW + timedelta(seconds=3))
    asked = b24.sent("event.offline.get")
    assert asked[-1].get("process_id") == reserved or asked[-2].get("process_id") == reserved
    assert not b24._reserved[reserved] and OfflineQueue.get().process_id is None
    assert Card.get_by_id(card.id).last_name == "Иванова"
    assert B24Event.select().where(B24Event.processed_at.is_null()).count() == 0


def test_seen_online_and_offline_the_contact_is_read_once(app, b24, crm):
    card_for(crm, 42, "+79161234567")
    B24Event.create(portal=crm, event="ONCRMCONTACTUPDATE", entity_id=42, received_at=NOW)
    b24.queue_offline("ONCRMCONTACTUPDATE", 42)
    tick(app)
    assert [p["id"] for p in b24.sent("crm.contact.get")] == ["42"]
    assert B24Event.select().count() == 1


def merge_in_crm(b24, deleted=42, survivor=43):
    """What a merge looks like from outside: the survivor updated with the other's phone,
    the other deleted."""
    b24.contacts[survivor]["PHONE"] += b24.contacts[deleted]["PHONE"]
    del b24.contacts[deleted]
    b24.queue_offline("ONCRMCONTACTUPDATE", survivor)
    b24.queue_offline("ONCRMCONTACTDELETE", deleted)


def test_a_merge_moves_balance_lots_and_history_exactly_once(app, b24, crm):
    gone = card_for(crm, 42, "+79161234567", earn_kop=10000)
    stays = card_for(crm, 43, "+79167654321", earn_kop=5000)
    operations.accrue(crm, gone.number, 6000000, key="buy", actor="t", reference="deal-9",
                      now=NOW - timedelta(days=2))
    expiries = sorted(l.expires_at for l in Lot.select().where(Lot.card == gone.id))
    merge_in_crm(b24)
    tick(app)
    gone, stays = Card.get_by_id(gone.id), Card.get_by_id(stays.id)
    assert (gone.status, gone.balance_kop, gone.contact_id) == ("closed", 0, None)
    assert stays.balance_kop == 10000 + 5000 + 180000 and stays.purchases_kop == 6000000
    assert stays.tier == "Серебряный"
    pairs = [(e.card_id, e.amount_kop) for e in
             Entry.select().where(Entry.kind == "transfer").order_by(Entry.id)]
    assert pairs == [(gone.id, -10000), (stays.id, 10000), (gone.id, -180000), (stays.id, 180000)]
    moved = sorted(l.expires_at for l in Lot.select().join(Entry).where(
        (Lot.card == stays.id) & (Entry.kind == "transfer")))
    assert moved == expiries  # each lot keeps its expiry
    assert Entry.select().where(Entry.card == gone.id).count() == 4  # its history stays
    assert CardMark.get(CardMark.card == gone.id).other_id == stays.id
    told = Notification.get(Notification.key == f"merge:card{gone.id}:into{stays.id}")
    assert told.recipient == "7" and f"#{gone.id}" in told.body
    assert Outbox.select().where(Outbox.key == f"notice:{told.id}").exists()
    # The same events again (the queue, an online copy): nothing moves twice.
    b24.queue_offline("ONCRMCONTACTDELETE", 42)
    B24Event.create(portal=crm, event="ONCRMCONTACTDELETE", entity_id=42, received_at=NOW)
    tick(app, NOW + timedelta(seconds=3))
    assert Entry.select().where(Entry.kind == "transfer").count() == 4
    assert Card.get_by_id(stays.id).balance_kop == 195000
    assert Notification.select().where(Notification.template == "data_merge").count() == 1


def test_a_merge_into_a_contact_without_a_card_re_keys_it(app, b24, crm):
    card = card_for(crm, 42, "+79161234567", earn_kop=10000)
    merge_in_crm(b24)
    tick(app)
    card = Card.get_by_id(card.id)
    assert (card.contact_id, card.status, card.balance_kop) == (43, "active", 10000)
    assert not Entry.select().where(Entry.kind == "transfer").exists()


def test_a_deleted_contact_blocks_its_card_keeps_the_ledger_and_tells_once(app, b24, crm):
    card = card_for(crm, 42, "+79161234567", earn_kop=10000)
    del b24.contacts[42]
    b24.queue_offline("ONCRMCONTACTDELETE", 42)
    tick(app)
    card = Card.get_by_id(card.id)
    assert (card.status, card.balance_kop, card.contact_id) == ("blocked", 10000, 42)
    assert CardMark.get(CardMark.card == card.id).kind == "contact_deleted"
    b24.queue_offline("ONCRMCONTACTDELETE", 42)
    tick(app, NOW + timedelta(seconds=3))
    assert Notification.select().where(Notification.key == f"contact_deleted:card{card.id}").count() == 1
    assert Entry.select().where(Entry.card == card.id).count() == 1


def test_a_rate_limited_lookup_leaves_the_delete_for_the_next_tick(app, b24, crm):
    card = card_for(crm, 42, "+79161234567")
    merge_in_crm(b24)
    b24.failures["crm.duplicate.findbycomm"] = [LIMIT_503]
    tick(app)
    assert Card.get_by_id(card.id).contact_id == 42  # not yet decided
    tick(app, NOW + timedelta(seconds=3))
    assert Card.get_by_id(card.id).contact_id == 43


def test_merging_a_card_into_itself_is_refused(crm):
    card = card_for(crm, 42, "+79161234567")
    with pytest.raises(merges.CannotMerge):
        merges.merge_cards(crm, card, card, actor="t")


def test_a_portal_is_asked_once_per_interval_and_first_one_interval_after_it_is_seen(app, b24, installed):
    from scheduler import offline

    offline.drain(B24Settings.from_config(app.config), now=NOW)
    assert b24.sent("event.offline.get") == []  # first sight: its queue only starts now
    offline.drain(B24Settings.from_config(app.config), now=NOW + timedelta(seconds=3))
    assert b24.sent("event.offline.get") == []
    offline.drain(B24Settings.from_config(app.config), now=NOW + timedelta(seconds=31))
    assert len(b24.sent("event.offline.get")) == 1


def test_a_portal_blocked_by_support_is_not_asked_again(app, b24, crm):
    from background import lanes

    b24.failures["event.offline.get"] = [(503, {"error": "OVERLOAD_LIMIT",
                                                "error_description": "REST API is blocked"})]
    tick(app)
    assert lanes.alerts(crm.id)[0].alert_code == "OVERLOAD_LIMIT"
    asked = len(b24.sent("event.offline.get")) + b24.requests
    tick(app, NOW + timedelta(minutes=5))
    assert len(b24.sent("event.offline.get")) + b24.requests == asked
