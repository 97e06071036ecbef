"""Reconciliation: is what the CRM shows on each contact (card number, balance, tier)
what our ledger says? Nightly after the contact sync, and on demand (Данные page, CLI).

Every contact is read by keyset pages exactly as the full sync reads them (50
`crm.contact.list` per batch, scheduler.sync.list_commands / read_pages), selecting only
the ID and our three fields. We are the truth for the ledger, so a field that differs
(edited by hand, a lost write) is written again through the outbox; a contact that shows
a card we no longer hold for it (merged, anonymised, deleted) has the fields cleared.
Names and phones go the other way and are the contact sync's job. The report says what
was repaired; the run is recorded in the audit trail.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from activities.contacts import UF_BALANCE, UF_CARD, UF_TIER, fields_update
from activities.b24client import B24Error, B24PermanentError
from activities.portals import B24Settings, client_for
from api.clock import utcnow
from api.data import audit
from api.db import db
from api.ledger.money import MoneyError, format_kop, parse_kop
from api.models import Card, Portal
from api.outbox import enqueue
from scheduler.sync import BATCHES_MAX, list_commands, read_pages

log = logging.getLogger(__name__)
SELECT = ("ID", UF_CARD, UF_BALANCE, UF_TIER)
LIVE = ("active", "blocked")  # a card in these states is shown on its contact
REPAIRS_KEPT = 500  # listed in the report; all are counted and written


@dataclass
class Report:
    contacts_seen: int = 0
    repaired: int = 0
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.contacts_seen:,} contacts compared, {self.repaired:,} repaired"


def _kop(value) -> int | None:
    try:
        return parse_kop(str(value), allow_zero=True, allow_negative=True) if value not in (None, "") else None
    except MoneyError:
        return None


def _shown(row: dict) -> tuple:
    return (str(row.get(UF_CARD) or ""), _kop(row.get(UF_BALANCE)), str(row.get(UF_TIER) or ""))


def _check_page(portal: Portal, rows: list[dict], report: Report, now: datetime) -> None:
    ids = [int(row["ID"]) for row in rows]
    cards = {c.contact_id: c for c in Card.select().where(
        (Card.portal == portal) & Card.contact_id.in_(ids) & Card.status.in_(LIVE))}
    for row in rows:
        contact_id, shown = int(row["ID"]), _shown(row)
        card = cards.get(contact_id)
        ours = (card.number, card.balance_kop, card.tier) if card else ("", None, "")
        if shown == ours or (card is None and not any(shown)):
            continue
        call = fields_update(card) if card else ("crm.contact.update", {
            "id": contact_id, "fields": {UF_CARD: "", UF_BALANCE: "", UF_TIER: ""}})
        enqueue(portal, f"reconcile:c{contact_id}:{now.isoformat()}", {"fields": call})
        report.repaired += 1
        if len(report.lines) < REPAIRS_KEPT:
            report.lines.append(_line(contact_id, card, shown, ours))


def _line(contact_id: int, card: Card | None, shown: tuple, ours: tuple) -> str:
    names = ("карта", "баланс", "уровень")
    fix = lambda v, i: (format_kop(v) if i == 1 and v is not None else (v or "—"))  # noqa: E731
    diffs = [f"{names[i]} {fix(shown[i], i)} → {fix(ours[i], i)}"
             for i in range(3) if shown[i] != ours[i]]
    who = f"карта #{card.id}" if card else "карты нет"
    return f"контакт {contact_id} ({who}): " + ", ".join(diffs)


def reconcile(portal: Portal, settings: B24Settings, *, actor: str = "system:reconcile",
              now: datetime | None = None, session=None) -> Report:
    """Compare every contact; raises the B24Error that stopped it (pages read are done)."""
    now = now or utcnow()
    client = client_for(portal, settings, session)
    report, after_id = Report(), 0
    for _ in range(BATCHES_MAX):
        result = client.batch(list_commands(after_id, SELECT), halt=True)
        pages, finished, failure = read_pages(result, after_id)
        with db.atomic():
            for rows in pages:
                _check_page(portal, rows, report, now)
        report.contacts_seen += sum(len(rows) for rows in pages)
        after_id = next((int(rows[-1]["ID"]) for rows in reversed(pages) if rows), after_id)
        if failure is not None:
            raise failure
        if finished:
            audit.record(portal, actor, "crm.reconcile", details={
                "contacts": report.contacts_seen, "repaired": report.repaired}, now=now)
            return report
    raise B24PermanentError("RECONCILE_TOO_LONG", f"more than {BATCHES_MAX} batches of contacts")


def reconcile_all(settings: B24Settings, *, now: datetime | None = None, session=None) -> int:
    """Nightly: every installed portal; one portal's failure does not stop the rest."""
    repaired = 0
    portals = Portal.select().where((Portal.status == "active") & Portal.access_token.is_null(False)
                                    & (Portal.access_token != "")).order_by(Portal.id)
    for portal in portals:
        try:
            repaired += reconcile(portal, settings, now=now, session=session).repaired
        except B24Error as exc:
            log.warning("reconciliation of portal %s failed: %s", portal.member_id, exc)
    return repaired
