"""Keeps our copy of each client (names, e-mail, birthdate, manager, category) current.

Two paths feed it. ONCRMCONTACTUPDATE events carry only the contact id (and sometimes no
token), so `process_contact_events` fetches those contacts with the portal's stored tokens,
50 `crm.contact.get` to a batch. The nightly `full_sync` reads every contact by keyset
paging (protocol doc §8.3): `order ID ASC`, `filter >ID`, `start=-1`, 50 `crm.contact.list`
to a batch, each page's `>ID` pointing at the last row of the page before it through
`$result[pN][49][ID]`. One batch request reads 2,500 contacts, so 100,000 take 41 requests
(the last one finds the empty page that says we are done), well inside the 50-request burst.

A pass keeps a cursor (SyncCursor: the last contact id applied, written in the same
transaction as the page): after any failure (rate limit, outage, a crash) the next run
goes on after it instead of starting over at contact 0. It paces on the method's run time:
every answer says how many seconds (`time.operating`) this app spent in crm.contact.list
over the last 10 minutes, and a method past 480 s is blocked with OPERATION_TIME_LIMIT
(limits doc §B1); before a batch that could cross that line, the sync waits for
`operating_reset_at`, when the oldest minute drops out.

Why crm.contact.list and not crm.item.list, although the docs mark it DEPRECATED
("development stopped", not removed): crm.item.list cannot name PHONE/EMAIL in `select`;
its multi-fields (`fm`) come only with `select: ['*']`, i.e. every field and user field of
every contact, several times the run time per page, which is exactly what the 480 s budget
counts. Its rows are camelCase under `result.items` while the event path reads
crm.contact.get's UPPER_CASE rows, so one row parser serves both. Move when the old
method is switched off, not before.

Only profile fields are copied (cards.update_profile): the card number stays what it was,
since it is the card's identity even after the contact's phone changes.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping

from activities.b24client import (
    BATCH_COMMANDS_MAX,
    B24Error,
    B24PermanentError,
    B24TransientError,
    BatchResult,
    classify,
)
from activities.contacts import card_data
from activities.portals import B24Settings, client_for
from api.clock import utcnow
from api.db import db
from api.ledger import cards as cards_mod
from api.ledger import rules as rules_mod
from api.models import B24Event, Card, Portal, SyncCursor
from scheduler import client_copy

log = logging.getLogger(__name__)

CONTACT_EVENT = "ONCRMCONTACTUPDATE"
EVENTS_MAX = 500  # per portal and run: at most 10 batch requests
PAGE_ROWS = 50  # crm.contact.list always answers 50 rows a page
BATCHES_MAX = 4_000  # 10 million contacts: a portal that never stops paging is a bug
LIST_SELECT = ("ID", "NAME", "LAST_NAME", "SECOND_NAME", "PHONE", "EMAIL", "BIRTHDATE",
               "ASSIGNED_BY_ID")  # multi-fields (PHONE, EMAIL) only come when named (§7.1)
LIST_METHOD = "crm.contact.list"
OPERATING_MAX_S = 480  # run time per method and app in 10 minutes (limits doc §B1)
OPERATING_MARGIN = 0.9  # never plan to pass 90 % of it: other jobs use the method too
PAUSE_MAX_S = 600  # the window is 10 minutes: no wait is ever longer


@dataclass(frozen=True)
class SyncReport:
    contacts_seen: int
    cards_updated: int
    requests: int
    resumed_after: int = 0  # the contact id this run went on after (0: a fresh pass)
    paused_s: float = 0.0  # time spent waiting for the method's run-time budget

    def __str__(self) -> str:
        """The line `scheduler run-once sync` prints."""
        line = (f"{self.contacts_seen:,} contacts seen, {self.cards_updated:,} cards updated, "
                f"{self.requests} requests")
        if self.resumed_after:
            line += f", resumed after contact {self.resumed_after}"
        if self.paused_s:
            line += f", paused {self.paused_s:.0f} s for the {OPERATING_MAX_S} s run-time limit"
        return line


class Pacer:
    """Waits before a batch whose run time could push the method past its budget.

    The next batch is assumed to cost what the last one did (its rise in `operating`).
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep,
                 limit_s: float = OPERATING_MAX_S * OPERATING_MARGIN) -> None:
        self.sleep, self.limit_s = sleep, limit_s
        self.last_s: float | None = None
        self.paused_s = 0.0

    def after(self, result: BatchResult) -> None:
        times = [t for t in result.times.values() if isinstance(t, dict) and "operating" in t]
        if not times:
            return
        operating = max(float(t["operating"]) for t in times)
        cost = operating - self.last_s if self.last_s is not None else operating
        self.last_s = operating
        if operating + max(cost, 0.0) < self.limit_s:
            return
        wait_s = _until_reset(times)
        if wait_s > 0:
            log.info("contact sync: %.0f s of %s in 10 minutes; waiting %.0f s",
                     operating, LIST_METHOD, wait_s)
            self.sleep(wait_s)
            self.paused_s += wait_s
            self.last_s = None  # the window moved: the next answer is a fresh reading


def _until_reset(times: list[dict]) -> float:
    """Seconds until the oldest minute leaves the window, by the portal's own clock."""
    resets = [float(t["operating_reset_at"]) for t in times if t.get("operating_reset_at")]
    now = max((float(t.get("finish") or 0) for t in times), default=0.0)
    if not resets or not now:
        return PAUSE_MAX_S
    return min(max(min(resets) - now, 1.0), PAUSE_MAX_S)


# --- events -----------------------------------------------------------------------------------

def process_contact_events(settings: B24Settings, *, now: datetime | None = None, session=None,
                           limit: int = EVENTS_MAX, portal=None) -> int:
    """Apply pending contact events; returns how many were marked processed.

    `limit` counts per portal, so a portal whose events keep failing holds back only itself.
    Events whose contact could not be read for a transient reason stay pending.
    """
    now = now or utcnow()
    pending = (B24Event.select(B24Event.portal).distinct()
               .where((B24Event.event == CONTACT_EVENT) & B24Event.processed_at.is_null()))
    if portal is not None:
        pending = pending.where(B24Event.portal == portal)
    portal_ids = sorted(row.portal_id for row in pending)
    return sum(_portal_events(Portal.get_by_id(pid), settings, now, session, limit)
               for pid in portal_ids)


def _portal_events(portal: Portal, settings: B24Settings, now: datetime, session,
                   limit: int) -> int:
    events = list(B24Event.select(B24Event.id, B24Event.entity_id)
                  .where((B24Event.portal == portal) & (B24Event.event == CONTACT_EVENT)
                         & B24Event.processed_at.is_null())
                  .order_by(B24Event.id).limit(max(1, limit)))
    if not _usable(portal):  # uninstalled: nobody can read its contacts any more
        return _mark_processed([e.id for e in events], now)
    by_contact: dict[int, list[int]] = defaultdict(list)
    for event in events:
        by_contact[event.entity_id].append(event.id)
    client = client_for(portal, settings, session)
    category = rules_mod.load(portal).client_category_field
    marked = 0
    for chunk in _chunks(list(by_contact), BATCH_COMMANDS_MAX):
        try:
            result = client.batch({f"c_{cid}": ("crm.contact.get", {"id": cid}) for cid in chunk})
        except B24Error as exc:  # rate limit, outage, lost tokens: the rest wait for next run
            log.warning("contact events of portal %s wait: %s", portal.member_id, exc)
            break
        with db.atomic():
            done = _apply_contacts(portal, chunk, result, category, now)
            marked += _mark_processed([eid for cid in done for eid in by_contact[cid]], now)
    return marked


def _apply_contacts(portal: Portal, contact_ids: list[int], result: BatchResult,
                    category: str | None, now: datetime) -> list[int]:
    """Update the cards of the contacts read; returns the contact ids that are settled."""
    cards = _cards_by_contact(portal, contact_ids)
    done = []
    for cid in contact_ids:
        key = f"c_{cid}"
        if result.ok(key):
            contact = result.results[key]
            if isinstance(contact, dict):
                client_copy.store(portal, [contact], category, now)
                if cid in cards:
                    _update_card(cards[cid], contact, category, now)
            done.append(cid)
        elif key in result.errors:
            err = result.errors[key]
            if classify(err.code, err.description, None).retryable:
                continue
            if "not found" not in err.description.lower():
                log.warning("contact %s of portal %s unreadable, event dropped: %s %s",
                            cid, portal.member_id, err.code, err.description)
            done.append(cid)  # deleted, or forbidden: asking again changes nothing
    return done


def _mark_processed(event_ids: list[int], now: datetime) -> int:
    if not event_ids:
        return 0
    return (B24Event.update(processed_at=now)
            .where(B24Event.id.in_(event_ids) & B24Event.processed_at.is_null()).execute())


# --- full sync --------------------------------------------------------------------------------

def full_sync(portal: Portal, settings: B24Settings, *, now: datetime | None = None,
              session=None, progress: Callable[[str], None] | None = None,
              pacer: Pacer | None = None, dry_run: bool = False) -> SyncReport:
    """Read every contact of the portal and bring the cards in line with it.

    Goes on after the cursor an unfinished pass left. Raises the B24Error that stopped it;
    the pages read before it are applied and the cursor points after them.
    `dry_run` reads the same pages and counts the cards that would change, writing nothing
    (not even the cursor).
    """
    now = now or utcnow()
    pacer = pacer or Pacer()
    client = client_for(portal, settings, session)
    category = rules_mod.load(portal).client_category_field
    select = [*LIST_SELECT, *([category] if category else [])]
    before = client.requests_made
    cursor = SyncCursor.get_or_none(SyncCursor.portal == portal)
    resumed = after_id = cursor.after_id if cursor else 0
    seen = cursor.contacts_seen if cursor else 0
    updated = 0
    for _ in range(BATCHES_MAX):
        result = client.batch(list_commands(after_id, select), halt=True)
        pages, finished, failure = read_pages(result, after_id)
        after_id = next((int(rows[-1]["ID"]) for rows in reversed(pages) if rows), after_id)
        seen += sum(len(rows) for rows in pages)
        with db.atomic():
            if dry_run:
                updated += sum(_page_changes(portal, rows, category) for rows in pages)
            else:
                updated += sum(_sync_page(portal, rows, category, now) for rows in pages)
                _keep_cursor(portal, None if finished else after_id, seen, now)
        if progress is not None:
            progress((f"read {seen:,} contacts, {updated:,} cards would change" if dry_run
                      else f"synced {seen:,} contacts, {updated:,} cards updated")
                     + (f" (resumed after contact {resumed})" if resumed else ""))
        if failure is not None:
            raise failure
        if finished:
            return SyncReport(seen, updated, client.requests_made - before, resumed,
                              pacer.paused_s)
        pacer.after(result)
    raise B24PermanentError("SYNC_TOO_LONG", f"more than {BATCHES_MAX} batches of contacts")


def _keep_cursor(portal: Portal, after_id: int | None, seen: int, now: datetime) -> None:
    """Store where the pass stands, or forget it when the pass is complete (None)."""
    if after_id is None:
        SyncCursor.delete().where(SyncCursor.portal == portal).execute()
        return
    changed = SyncCursor.update(after_id=after_id, contacts_seen=seen, updated_at=now).where(
        SyncCursor.portal == portal).execute()
    if not changed:
        SyncCursor.create(portal=portal, after_id=after_id, contacts_seen=seen, started_at=now,
                          updated_at=now)


def list_commands(after_id: int, select: Iterable[str]) -> dict[str, tuple[str, dict]]:
    """50 keyset pages; page k starts after the last row of page k-1 (`$result[p…][49][ID]`)."""
    commands: dict[str, tuple[str, dict]] = {}
    start_after: Any = after_id
    for key in _page_keys():
        commands[key] = (LIST_METHOD, {
            "order": {"ID": "ASC"}, "filter": {">ID": start_after}, "start": -1,
            "select": list(select)})
        start_after = f"$result[{key}][{PAGE_ROWS - 1}][ID]"
    return commands


def read_pages(result: BatchResult, after_id: int
               ) -> tuple[list[list[dict]], bool, B24Error | None]:
    """The trustworthy pages of one batch, in order: (pages, finished, failure).

    A page after a short or failed one was run with a reference to a row that does not
    exist; the portal then leaves the filter half-resolved or empty, so its rows mean
    nothing and are ignored.
    """
    pages: list[list[dict]] = []
    for key in _page_keys():
        if not result.ok(key):
            err = result.errors.get(key)
            failure = (classify(err.code, err.description, None) if err else
                       B24TransientError("BATCH_INCOMPLETE", f"page {key} did not run"))
            return pages, False, failure
        rows = _page_rows(result.results[key], after_id)
        pages.append(rows)
        if len(rows) < PAGE_ROWS:
            return pages, True, None
        after_id = int(rows[-1]["ID"])
    return pages, False, None


def _page_rows(raw: Any, after_id: int) -> list[dict]:
    """Check the keyset promise (ascending ids above `after_id`): else we could loop or skip."""
    rows = list(raw.values()) if isinstance(raw, dict) else list(raw or [])
    ids = [str(row.get("ID") or "") if isinstance(row, dict) else "" for row in rows]
    numbers = [int(ident) for ident in ids if ident.isdigit()]
    if len(rows) > PAGE_ROWS or len(numbers) != len(rows) or \
            any(b <= a for a, b in zip([after_id, *numbers], numbers)):
        raise B24PermanentError("KEYSET_BROKEN",
                                f"the page after ID {after_id} is not ascending ids above it")
    return rows


def _sync_page(portal: Portal, rows: list[dict], category: str | None, now: datetime) -> int:
    client_copy.store(portal, rows, category, now)
    cards = _cards_by_contact(portal, [int(row["ID"]) for row in rows])
    return sum(_update_card(cards[int(row["ID"])], row, category, now)
               for row in rows if int(row["ID"]) in cards)


def _page_changes(portal: Portal, rows: list[dict], category: str | None) -> int:
    """What _sync_page would update, for a dry run."""
    cards = _cards_by_contact(portal, [int(row["ID"]) for row in rows])
    return sum(bool(profile_changes(cards[int(row["ID"])], card_data(dict(row), category),
                                    category))
               for row in rows if int(row["ID"]) in cards)


def sync_all(settings: B24Settings, *, now: datetime | None = None, session=None,
             progress: Callable[[str], None] | None = None, dry_run: bool = False,
             only: Portal | None = None) -> dict[str, SyncReport | B24Error]:
    """full_sync of every installed portal (or `only` that one); one portal's B24 failure
    doesn't stop the rest."""
    outcome: dict[str, SyncReport | B24Error] = {}
    portals = (Portal.select().where((Portal.status == "active") & Portal.access_token.is_null(False)
                                     & (Portal.access_token != "")).order_by(Portal.id))
    if only is not None:
        portals = portals.where(Portal.id == only.id)
    for portal in portals:
        name = portal.domain or portal.member_id
        say = (lambda line, name=name: progress(f"{name}: {line}")) if progress else None
        try:
            outcome[portal.member_id] = full_sync(portal, settings, now=now, session=session,
                                                  progress=say, dry_run=dry_run)
        except B24Error as exc:  # the message is already masked by the client
            log.warning("contact sync of portal %s failed: %s", portal.member_id, exc)
            outcome[portal.member_id] = exc
    return outcome


# --- cards ------------------------------------------------------------------------------------

def _update_card(card: Card, contact: Mapping[str, Any], category: str | None,
                 now: datetime) -> bool:
    """Write the profile fields that differ; True when the card changed."""
    changes = profile_changes(card, card_data(dict(contact), category), category)
    if changes:
        cards_mod.update_profile(card, changes, now=now)
    return bool(changes)


def profile_changes(card: Card, data: Mapping[str, Any], category: str | None) -> dict:
    """The profile fields of `data` that differ from the card, cut to the columns' lengths.

    Without a category field in the rules the contact says nothing about the category,
    so the card keeps the one it was given.
    """
    changes = {}
    for name in cards_mod.PROFILE_FIELDS:
        if name == "client_category" and not category:
            continue
        value = _fit(name, data.get(name))
        if _stored(getattr(card, name)) != value:
            changes[name] = value
    return changes


def _fit(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if not isinstance(value, str):
        return value
    max_length = getattr(Card._meta.fields[name], "max_length", None)
    return value.strip()[:max_length].strip() or None  # PostgreSQL refuses what's too long


def _stored(value: Any) -> Any:
    return (value.strip() or None) if isinstance(value, str) else value


def _cards_by_contact(portal: Portal, contact_ids: list[int]) -> dict[int, Card]:
    if not contact_ids:
        return {}
    query = Card.select().where((Card.portal == portal) & Card.contact_id.in_(contact_ids))
    return {card.contact_id: card for card in query}


# --- helpers ----------------------------------------------------------------------------------

def _usable(portal: Portal) -> bool:
    return portal.status == "active" and bool(portal.access_token)


def _page_keys() -> Iterator[str]:
    return (f"p{k}" for k in range(BATCH_COMMANDS_MAX))


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
