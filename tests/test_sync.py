"""Contact data stays current: ONCRMCONTACTUPDATE events and the nightly keyset sync,
against a fake portal that also answers crm.contact.list the way the real one does."""
from __future__ import annotations

import json
import re
import time
from bisect import bisect_right
from datetime import date, datetime

import pytest
import responses
from b24fake import ENDPOINT, FakePortal

from activities.b24client import B24PermanentError, B24TransientError
from activities.portals import B24Settings
from api.ledger import cards, rules
from api.models import B24Event, Card, Contact, Portal, SyncCursor
from scheduler import sync

T0 = datetime(2026, 1, 1, 3, 0)
LIMIT_503 = (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})


class ListingPortal(FakePortal):
    """FakePortal plus `crm.contact.list` with keyset paging, and `$result[key][i][field]`
    references walked as CRestUtil::processBatchElement walks them.

    `listing` is the sorted contact ids (a `range` for a big portal) and `make_row` builds
    a row on demand, so 100,000 contacts cost nothing until they are read.
    """

    def __init__(self, rsps):
        super().__init__(rsps)
        self.listing = None
        self.make_row = None
        self.bodies: list[dict] = []  # every HTTP body we were sent, auth removed

    def _http(self, request):
        body = json.loads(request.body or "{}")
        body.pop("auth", None)
        self.bodies.append(body)
        return super()._http(request)

    def _resolve(self, value, results):
        if isinstance(value, dict):
            return {k: self._resolve(v, results) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, results) for v in value]
        if not (isinstance(value, str) and value.startswith("$result[")):
            return value
        found = results
        for step in re.findall(r"\[([^\]]+)\]", value):
            if isinstance(found, list) and step.isdigit() and int(step) < len(found):
                found = found[int(step)]
            elif isinstance(found, dict) and step in found:
                found = found[step]
            else:
                return ""  # a row that isn't there: the filter value comes out empty
        return str(found)

    def m_crm_contact_list(self, p):
        assert p.get("order") == {"ID": "ASC"}
        after = (p.get("filter") or {}).get(">ID", "")
        ids = self.listing if self.listing is not None else sorted(self.contacts)
        # CRM drops a filter condition whose value is empty: the list starts over.
        first = bisect_right(ids, int(after)) if str(after).isdigit() else 0
        if p.get("start") != "-1":
            first += int(p.get("start") or 0)
        select = p.get("select") or []
        rows = [self._row(cid, select) for cid in ids[first:first + 50]]
        if p.get("start") == "-1":
            return 200, {"result": rows, "total": 0}
        more = first + 50 < len(ids)
        return 200, {"result": rows, "total": len(ids), **({"next": first + 50} if more else {})}

    def _row(self, cid, select):
        row = self.contacts.get(cid) or self.make_row(cid)
        return {k: v for k, v in row.items() if k in select}

    def listed(self):
        """Every id any crm.contact.list answer could have held, in order asked."""
        return [p for name, p in self.calls if name == "crm.contact.list"]


@pytest.fixture
def portal_b24(app):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield ListingPortal(rsps)


@pytest.fixture
def settings(app):
    return B24Settings.from_config(app.config)


def make_card(portal, contact_id, phone, **fields):
    data = {"phone": phone, "last_name": "Старая", "first_name": "Анна",
            "client_category": "Врач", "contact_id": contact_id, **fields}
    card, _ = cards.create_card(portal, data, actor="t", now=T0)
    return card


def event(portal, contact_id, name=sync.CONTACT_EVENT):
    return B24Event.create(portal=portal, event=name, entity_id=contact_id, received_at=T0)


def pending():
    return sorted(e.entity_id for e in B24Event.select().where(B24Event.processed_at.is_null()))


# --- events -----------------------------------------------------------------------------------

def test_event_updates_the_profile_and_keeps_the_card_number(b24, installed, settings):
    card = make_card(installed, 42, "9161234567", email="old@example.ru", client_category="VIP")
    b24.add_contact(42, LAST_NAME="Иванова", EMAIL=[{"VALUE": "new@example.ru"}],
                    PHONE=[{"VALUE_TYPE": "MOBILE", "VALUE": "+7 926 000-00-01"}],
                    ASSIGNED_BY_ID="9")
    event(installed, 42), event(installed, 42)  # the same contact twice: read once

    assert sync.process_contact_events(settings, now=T0) == 2
    card = Card.get_by_id(card.id)
    assert (card.number, card.last_name, card.first_name, card.email, card.birthdate,
            card.manager_id) == ("79161234567", "Иванова", "Анна", "new@example.ru",
                                 date(1990, 5, 17), 9)
    assert card.search_text == "иванова анна new@example.ru"
    assert card.client_category == "VIP"  # no category field in the rules: ours stands
    assert b24.requests == 1 and [p["id"] for p in b24.sent("crm.contact.get")] == ["42"]
    assert pending() == []


@pytest.mark.parametrize("birthdate, expected", [
    ("1990-05-17T03:00:00+03:00", date(1990, 5, 17)),
    ("1990-05-16T21:00:00-03:00", date(1990, 5, 17)),  # the first 10 characters say the 16th
    ("", None),
])
def test_birthdate_is_the_utc_date(b24, installed, settings, birthdate, expected):
    make_card(installed, 42, "9161234567", birthdate=date(2000, 1, 1))
    b24.add_contact(42, BIRTHDATE=birthdate)
    event(installed, 42)
    sync.process_contact_events(settings, now=T0)
    assert Card.get(Card.contact_id == 42).birthdate == expected


def test_contact_without_a_card_and_a_deleted_contact_are_settled(b24, installed, settings):
    card = make_card(installed, 42, "9161234567")
    b24.add_contact(7)  # exists, has no card
    event(installed, 7), event(installed, 42)  # 42 has a card but was deleted in the CRM

    assert sync.process_contact_events(settings, now=T0) == 2
    assert pending() == [] and Card.select().count() == 1
    assert Card.get_by_id(card.id).last_name == "Старая"
    assert B24Event.get(B24Event.entity_id == 7).processed_at == T0


def test_overlong_names_are_cut_to_the_column(b24, installed, settings):
    make_card(installed, 42, "9161234567")
    b24.add_contact(42, LAST_NAME="  " + "Ж" * 150, SECOND_NAME="   ")
    event(installed, 42)
    sync.process_contact_events(settings, now=T0)
    card = Card.get(Card.contact_id == 42)
    assert (card.last_name, card.middle_name) == ("Ж" * 100, None)


def test_rate_limit_leaves_events_for_the_next_run(b24, installed, settings):
    make_card(installed, 42, "9161234567")
    b24.add_contact(42, LAST_NAME="Иванова")
    event(installed, 42)
    b24.failures["batch"] = [LIMIT_503]

    assert sync.process_contact_events(settings, now=T0) == 0
    assert pending() == [42] and Card.get(Card.contact_id == 42).last_name == "Старая"

    assert sync.process_contact_events(settings, now=T0) == 1
    assert pending() == [] and Card.get(Card.contact_id == 42).last_name == "Иванова"


def test_a_sub_command_over_its_time_limit_waits_alone(b24, installed, settings):
    b24.add_contact(7), b24.add_contact(8)
    event(installed, 7), event(installed, 8)
    b24.failures["crm.contact.get"] = [(429, {"error": "OPERATION_TIME_LIMIT",
                                              "error_description": "Method is blocked"})]
    assert sync.process_contact_events(settings, now=T0) == 1
    assert pending() == [7]


def test_events_use_the_stored_tokens_and_refresh_them(b24, installed, settings):
    b24.tokens = {"stale-elsewhere"}  # the stored access token has expired
    b24.add_contact(42)
    event(installed, 42)
    assert sync.process_contact_events(settings, now=T0) == 1
    assert b24.refreshes == 1 and Portal.get_by_id(installed.id).access_token == "access-2"


def test_fifty_contacts_to_a_request(b24, installed, settings):
    for cid in range(1, 61):
        b24.add_contact(cid)
        event(installed, cid)
    assert sync.process_contact_events(settings, now=T0) == 60
    assert b24.requests == 2 and len(b24.sent("crm.contact.get")) == 60


def test_limit_counts_per_portal(b24, installed, settings):
    for cid in (1, 2, 3):
        b24.add_contact(cid)
        event(installed, cid)
    assert sync.process_contact_events(settings, now=T0, limit=2) == 2
    assert pending() == [3]


def test_deal_events_are_left_alone_and_uninstalled_portals_are_settled(b24, installed,
                                                                         settings):
    gone = Portal.create(member_id="gone", status="uninstalled", client_endpoint=ENDPOINT)
    event(installed, 5, "ONCRMDEALUPDATE")
    event(gone, 42)
    assert sync.process_contact_events(settings, now=T0) == 1
    assert pending() == [5] and b24.requests == 0


# --- full sync --------------------------------------------------------------------------------

def contacts(b24, count, step=3):
    """`count` contacts with gaps in their ids (deleted contacts leave holes)."""
    for n in range(count):
        b24.add_contact(step * (n + 1), NAME=f"Имя{n}", PHONE=[], EMAIL=[])
    return [step * (n + 1) for n in range(count)]


def test_full_sync_reads_2600_contacts_in_two_requests(portal_b24, installed, settings):
    ids = contacts(portal_b24, 2600)
    rules.save(installed, {"client_category_field": "UF_CRM_CATEGORY"}, actor="t")
    # Cards on both sides of the page and batch seams: rows 1, 50, 51, 2,500 and 2,501.
    changed = [make_card(installed, ids[i], f"916{i:07d}") for i in (0, 49, 50, 2499, 2500)]
    same = make_card(installed, ids[2599], "9160002599", last_name="Петрова",
                     first_name="Имя2599", birthdate=date(1990, 5, 17))
    cards.update_profile(same, {"manager_id": 7}, now=T0)
    lines = []

    report = sync.full_sync(installed, settings, now=datetime(2026, 2, 1), progress=lines.append)

    assert report == sync.SyncReport(contacts_seen=2600, cards_updated=5, requests=2)
    assert portal_b24.requests == 2
    assert portal_b24.listed()[0]["select"] == [*sync.LIST_SELECT, "UF_CRM_CATEGORY"]
    assert lines == ["synced 2,500 contacts, 4 cards updated",
                     "synced 2,600 contacts, 5 cards updated"]
    for card in changed:
        card = Card.get_by_id(card.id)
        assert (card.last_name, card.first_name, card.manager_id, card.updated_at) == \
            ("Петрова", f"Имя{ids.index(card.contact_id)}", 7, datetime(2026, 2, 1))
    assert Card.get_by_id(same.id).updated_at == T0  # nothing changed: not written


def test_every_contact_is_seen_once(portal_b24, installed, settings, monkeypatch):
    ids = contacts(portal_b24, 2600)
    seen = []
    real = sync._sync_page
    monkeypatch.setattr(sync, "_sync_page",
                        lambda p, rows, *a: seen.extend(int(r["ID"]) for r in rows) or real(
                            p, rows, *a))
    sync.full_sync(installed, settings, now=T0)
    assert seen == ids  # the stale pages after the short one start over: ignored


def test_batch_commands_chain_each_page_to_the_last_row_of_the_one_before(portal_b24,
                                                                          installed, settings):
    contacts(portal_b24, 120)
    sync.full_sync(installed, settings, now=T0)
    cmd = portal_b24.bodies[0]["cmd"]
    select = "&".join(f"select[{i}]={name}" for i, name in enumerate(sync.LIST_SELECT))
    assert list(cmd)[:3] == ["p0", "p1", "p2"] and len(cmd) == 50
    assert cmd["p0"] == f"crm.contact.list?order[ID]=ASC&filter[%3EID]=0&start=-1&{select}"
    assert cmd["p1"] == ("crm.contact.list?order[ID]=ASC&filter[%3EID]=$result[p0][49][ID]"
                         f"&start=-1&{select}")
    assert portal_b24.bodies[0]["halt"] == 1
    filters = [p["filter"][">ID"] for p in portal_b24.listed()]
    assert filters[:4] == ["0", "150", "300", ""]  # p3 points at a row p2 never had


@pytest.mark.parametrize("count, requests", [(0, 1), (49, 1), (50, 1), (2500, 2), (2549, 2)])
def test_request_count_at_the_edges(portal_b24, installed, settings, count, requests):
    contacts(portal_b24, count, step=1)
    report = sync.full_sync(installed, settings, now=T0)
    assert (report.contacts_seen, report.requests) == (count, requests)


def big_portal(b24, count):
    b24.listing = range(2, 2 * count + 2, 2)
    b24.make_row = lambda cid: {"ID": str(cid), "NAME": "Анна", "LAST_NAME": "Петрова"}


def test_request_count_for_20000_contacts(portal_b24, installed, settings):
    big_portal(portal_b24, 20_000)
    report = sync.full_sync(installed, settings, now=T0)
    assert (report.contacts_seen, report.requests) == (20_000, 9)


@pytest.mark.slow
def test_100000_contacts_take_41_requests(portal_b24, installed, settings, capsys):
    big_portal(portal_b24, 100_000)
    make_card(installed, 200_000, "9160000001")  # the very last contact
    started = time.monotonic()
    report = sync.full_sync(installed, settings, now=T0)
    with capsys.disabled():
        print(f"\n100,000 contacts: {report.requests} requests, "
              f"{time.monotonic() - started:.1f} s against the fake portal")
    assert report == sync.SyncReport(contacts_seen=100_000, cards_updated=1, requests=41)
    assert portal_b24.requests == 41 <= 45


def test_a_failed_page_keeps_what_came_before_it(portal_b24, installed, settings):
    ids = contacts(portal_b24, 200)
    card = make_card(installed, ids[60], "9160000001")
    # the first two pages run, the third is refused
    real = portal_b24.m_crm_contact_list
    answers = iter([real, real])

    def flaky(p):
        handler = next(answers, None)
        if handler is None:
            return 429, {"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"}
        return handler(p)

    portal_b24.m_crm_contact_list = flaky
    with pytest.raises(B24TransientError):
        sync.full_sync(installed, settings, now=T0)
    assert Card.get_by_id(card.id).last_name == "Петрова"


def test_a_portal_that_ignores_the_filter_is_stopped(portal_b24, installed, settings):
    contacts(portal_b24, 120)
    real = portal_b24.m_crm_contact_list
    portal_b24.m_crm_contact_list = lambda p: real({**p, "filter": {}})
    with pytest.raises(B24PermanentError, match="KEYSET_BROKEN"):
        sync.full_sync(installed, settings, now=T0)
    assert portal_b24.requests == 1


def test_sync_all_goes_on_after_a_failing_portal(portal_b24, installed, settings):
    other = Portal.create(member_id="other", domain="other.bitrix24.ru", status="active",
                          client_endpoint=ENDPOINT, access_token="access-1",
                          refresh_token="refresh-1")
    Portal.create(member_id="gone", status="uninstalled", client_endpoint=ENDPOINT)
    contacts(portal_b24, 10)
    portal_b24.failures["batch"] = [LIMIT_503]  # the first portal's only request
    lines = []

    outcome = sync.sync_all(settings, now=T0, progress=lines.append)

    assert set(outcome) == {installed.member_id, other.member_id}
    assert isinstance(outcome[installed.member_id], B24TransientError)
    assert outcome[other.member_id] == sync.SyncReport(10, 0, 1)
    assert lines == ["other.bitrix24.ru: synced 10 contacts, 0 cards updated"]


# --- resume and pacing ------------------------------------------------------------------------

PAGE_COST_S = 2.5  # run time the fake charges per crm.contact.list page: 125 s a batch


def paced_by_the_fake_clock(portal_b24):
    """A Pacer whose sleep moves the fake portal's clock (the operating window ages)."""
    def sleep(seconds):
        now = portal_b24.clock()
        portal_b24.clock = lambda: now + seconds
    return sync.Pacer(sleep=sleep)


def first_after_ids(portal_b24):
    return [p["filter"][">ID"] for p in portal_b24.listed() if p["filter"][">ID"].isdigit()]


def test_an_interrupted_sync_resumes_where_it_stopped(portal_b24, installed, settings):
    big_portal(portal_b24, 20_000)
    portal_b24.cost_s["crm.contact.list"] = PAGE_COST_S
    unpaced = sync.Pacer(sleep=lambda s: None, limit_s=float("inf"))
    with pytest.raises(B24TransientError, match="OPERATION_TIME_LIMIT"):
        sync.full_sync(installed, settings, now=T0, pacer=unpaced)
    cursor = SyncCursor.get(SyncCursor.portal == installed)
    # 480 s at 2.5 s a page: 192 pages ran, the 193rd was refused; all 192 are applied
    # (the fake's ids are even: contact 2 to 40,000)
    assert (cursor.after_id, cursor.contacts_seen) == (2 * 192 * 50, 192 * 50)
    assert Contact.select().count() == 192 * 50
    portal_b24.calls.clear()
    now = portal_b24.clock()
    portal_b24.clock = lambda: now + 600  # the next night: the window is empty again

    report = sync.full_sync(installed, settings, now=T0, pacer=paced_by_the_fake_clock(portal_b24))

    assert first_after_ids(portal_b24)[0] == str(2 * 192 * 50)  # not from contact 0
    assert (report.resumed_after, report.contacts_seen) == (2 * 192 * 50, 20_000)
    assert Contact.select().count() == 20_000
    assert SyncCursor.select().count() == 0  # the pass is complete: the next one starts over
    portal_b24.calls.clear()
    sync.full_sync(installed, settings, now=T0, pacer=paced_by_the_fake_clock(portal_b24))
    assert first_after_ids(portal_b24)[0] == "0"


def test_a_failed_request_keeps_the_cursor_where_it_was(portal_b24, installed, settings):
    big_portal(portal_b24, 5_000)

    def refuse_the_next_request(line):
        portal_b24.failures["batch"] = [LIMIT_503]
    with pytest.raises(B24TransientError):
        sync.full_sync(installed, settings, now=T0, progress=refuse_the_next_request)
    assert SyncCursor.get(SyncCursor.portal == installed).after_id == 2 * 2500
    report = sync.full_sync(installed, settings, now=T0)
    assert (report.resumed_after, report.contacts_seen, report.requests) == (5000, 5000, 2)


def test_the_sync_paces_on_operating_and_never_trips_the_limit(portal_b24, installed, settings,
                                                               capsys):
    big_portal(portal_b24, 20_000)
    portal_b24.cost_s["crm.contact.list"] = PAGE_COST_S
    report = sync.full_sync(installed, settings, now=T0, pacer=paced_by_the_fake_clock(portal_b24))
    with capsys.disabled():
        print(f"\n20,000 contacts at {PAGE_COST_S} s a page: {report.requests} requests, "
              f"{report.paused_s:.0f} s paused for the 480 s budget")
    assert (report.contacts_seen, report.requests) == (20_000, 9)
    assert report.paused_s > 0  # unpaced, the 193rd page is refused (test above)
    assert str(report) == ("20,000 contacts seen, 0 cards updated, 9 requests, paused 1200 s "
                           "for the 480 s run-time limit")
    assert SyncCursor.select().count() == 0
