"""Reconciliation: a field edited by hand on the contact is written back from the ledger;
a contact showing a card it no longer holds is cleared; the run is in the audit trail."""
from __future__ import annotations

import json

from test_sync import ListingPortal, make_card, portal_b24, settings  # noqa: F401 (fixtures)

from activities.contacts import UF_BALANCE, UF_CARD, UF_TIER, fields_update
from api.models import AuditEntry, Outbox
from scheduler import reconcile


def test_a_hand_edited_balance_is_repaired_and_reported(portal_b24, installed, settings):
    card = make_card(installed, 42, "9161234567")
    portal_b24.add_contact(42, **fields_update(card)[1]["fields"])
    portal_b24.add_contact(43, **{UF_BALANCE: "999"} | {UF_CARD: card.number, UF_TIER: card.tier})
    portal_b24.contacts[42][UF_BALANCE] = "5000"  # edited by hand in the CRM
    portal_b24.add_contact(44)  # no card, no fields: nothing to do
    report = reconcile.reconcile(installed, settings)
    assert (report.contacts_seen, report.repaired) == (3, 2)
    assert report.lines[0] == "контакт 42 (карта #1): баланс 5000.00 → 0.00"
    assert "контакт 43 (карты нет)" in report.lines[1]
    calls = [json.loads(row.calls)["fields"] for row in Outbox.select().order_by(Outbox.id)]
    assert calls[0] == list(fields_update(card))
    assert calls[1] == ["crm.contact.update", {"id": 43, "fields": {
        UF_CARD: "", UF_BALANCE: "", UF_TIER: ""}}]
    assert AuditEntry.get(AuditEntry.action == "crm.reconcile").details == \
        json.dumps({"contacts": 3, "repaired": 2})


def test_nothing_to_repair_writes_nothing(portal_b24, installed, settings):
    card = make_card(installed, 42, "9161234567")
    portal_b24.add_contact(42, **fields_update(card)[1]["fields"])
    assert reconcile.reconcile(installed, settings).repaired == 0
    assert not Outbox.select().exists()


def test_cli_reconcile(runner, portal_b24, installed):
    make_card(installed, 42, "9161234567")
    portal_b24.add_contact(42)
    result = runner.invoke(args=["data", "reconcile", "--portal", installed.member_id])
    assert result.exit_code == 0, result.output
    assert "1 repaired" in result.output and "контакт 42" in result.output
