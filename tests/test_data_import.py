"""CSV import: the dry run names every refusal and writes nothing; applying twice changes
nothing; each balance is one `import` entry with its lot; purchases set the tier only."""
from __future__ import annotations

import io
from datetime import date, datetime, timedelta

import pytest

from api.data import imports
from api.data.csvsource import SourceError, open_rows
from api.ledger import cards
from api.models import (ALL_TABLES, AuditEntry, Card, Contact, DailyStat, Entry, ExpiryDay, Lot)

NOW = datetime(2026, 3, 1, 12, 0)
HEADER = "Телефон;Фамилия;Имя;Отчество;E-mail;Дата рождения;Категория;Баланс;Покупки;Срок"
LINES = [
    "+7 916 111-11-11;Иванова;Мария;Петровна;maria@example.ru;17.05.1990;Врач;1500,50;60000;",
    "12345;Петров;Иван;;;;Врач;10;0;",                       # 3 invalid phone
    "+7 495 123-45-67;Сидоров;Олег;;;;Врач;10;0;",           # 4 landline
    "8 (916) 111-11-11;Иванова;Мария;;;;Врач;99;0;",         # 5 the same phone as line 2
    "+7 916 222-22-22;Кузнецов;Пётр;;;;Врач;10;0;",          # 6 two contacts hold it
    "+7 916 333-33-33;Смирнова;Ольга;;;;Врач;-5;0;",         # 7 negative balance
    "+7 916 444-44-44;Попов;Андрей;;;;Космонавт;10;0;",      # 8 unknown category
    "+7 916 555-55-55;Петрова;Анна;;;;Врач;200;1000;2026-12-31",  # 9 existing card
]
REFUSALS = {3: "invalid_phone", 4: "landline_phone", 5: "duplicate_phone", 6: "two_contacts",
            7: "negative_balance", 8: "unknown_category"}


def csv_bytes(lines=LINES, encoding="cp1251", delimiter=";") -> bytes:
    text = "\r\n".join([HEADER, *lines]).replace(";", delimiter) + "\r\n"
    return text.encode(encoding)


@pytest.fixture
def crm(portal):
    """The CRM copy: two contacts share one phone; a card exists for another client."""
    for cid in (501, 502):
        Contact.create(portal=portal, contact_id=cid, phone="79162222222")
    cards.create_card(portal, {"phone": "+79165555555", "last_name": "Петрова",
                               "first_name": "Анна", "client_category": "Врач"}, actor="test")
    return portal


def counts() -> dict:
    return {model.__name__: model.select().count() for model in ALL_TABLES}


def run(portal, data: bytes, apply: bool, **kw):
    outcomes = []
    report = imports.run(portal, io.BytesIO(data), apply=apply, actor="cli:test", now=NOW,
                         categories=["Врач", "Учитель"], on_outcome=outcomes.append, **kw)
    return report, {o.line: o for o in outcomes}


def test_dry_run_reports_every_refusal_kind_and_writes_nothing(crm):
    before = counts()
    report, by_line = run(crm, csv_bytes(), apply=False)
    assert counts() == before
    assert {line: o.reason_code for line, o in by_line.items() if o.status == "refused"} == REFUSALS
    assert by_line[2].status == "created" and by_line[9].status == "updated"
    assert report.counts == {"created": 1, "updated": 1, "refused": 6}
    assert report.dialect.encoding == "cp1251" and report.dialect.delimiter == ";"
    assert "строке 2" in by_line[5].reason and "501, 502" in by_line[6].reason
    assert report.balance_kop == 150050 + 20000
    assert "dry run" in report.summary() and "cp1251" in report.summary()


def test_apply_writes_one_import_entry_with_its_lot_and_sets_the_tier(crm):
    report, _ = run(crm, csv_bytes(), apply=True)
    assert report.counts["created"] == 1 and report.counts["updated"] == 1
    card = Card.get(Card.number == "79161111111")
    assert (card.balance_kop, card.purchases_kop, card.tier) == (150050, 6000000, "Серебряный")
    assert (card.last_name, card.middle_name, card.email, card.birthdate) == \
        ("Иванова", "Петровна", "maria@example.ru", date(1990, 5, 17))
    entries = list(Entry.select().where(Entry.card == card))
    assert [(e.kind, e.amount_kop, e.purchase_kop) for e in entries] == [("import", 150050, 6000000)]
    lot = Lot.get(Lot.entry == entries[0])
    assert lot.expires_at == NOW + timedelta(days=365)  # the rules' lifetime
    existing = Card.get(Card.number == "79165555555")
    assert (existing.balance_kop, existing.purchases_kop) == (20000, 100000)
    assert Lot.get(Lot.card == existing).expires_at == datetime(2026, 12, 31)  # the line's date
    assert not Entry.select().where(Entry.kind == "accrual").exists()  # no bonus for purchases
    from api.ledger import rollups

    rollups.catch_up(crm)  # the numbers are folded from committed entries
    assert DailyStat.get(DailyStat.kind == "import").amount_kop == 170050
    assert sum(row.live_kop for row in ExpiryDay.select()) == 170050


def test_applying_twice_changes_nothing(crm):
    run(crm, csv_bytes(), apply=True)
    before = counts()
    report, by_line = run(crm, csv_bytes(), apply=True)
    assert counts() == before
    assert report.counts == {"unchanged": 2, "refused": 6}
    assert by_line[2].status == by_line[9].status == "unchanged"


def test_other_money_for_an_imported_card_is_refused(crm):
    run(crm, csv_bytes(), apply=True)
    changed = [LINES[0].replace("1500,50", "1600")]
    report, by_line = run(crm, csv_bytes(changed), apply=True)
    assert by_line[2].reason_code == "already_imported"
    assert Card.get(Card.number == "79161111111").balance_kop == 150050


def test_utf8_with_commas_is_detected(portal):
    lines = ["+7 916 111-11-11,Иванова,Мария,,,,Врач,100,0,"]
    report, by_line = run(portal, csv_bytes(lines, "utf-8", ","), apply=True)
    assert (report.dialect.encoding, report.dialect.delimiter) == ("utf-8", ",")
    assert by_line[2].status == "created"
    assert Card.get(Card.number == "79161111111").last_name == "Иванова"


@pytest.mark.parametrize("data, message", [(b"", "пуст"), ("Имя;Баланс\r\nА;1\r\n".encode(), "телефон")])
def test_a_file_without_phones_is_refused_whole(data, message):
    with pytest.raises(SourceError, match=message):
        open_rows(io.BytesIO(data))


def test_bad_values_are_refused_with_the_reason(portal):
    lines = ["+7 916 111-11-11;Иванова;Мария;;not-an-email;;Врач;1;0;",
             "+7 916 111-11-12;Иванова;Мария;;;31.02.1990;Врач;1;0;",
             "+7 916 111-11-13;Иванова;Мария;;;;Врач;1.234;0;",
             "+7 916 111-11-14;;Мария;;;;Врач;1;0;",
             "+7 916 111-11-15;Иванова;Мария;;;;Врач;1;0;01.01.2020"]
    _, by_line = run(portal, csv_bytes(lines), apply=False)
    assert [by_line[n].reason_code for n in range(2, 7)] == \
        ["invalid_value", "invalid_value", "invalid_value", "missing_field", "invalid_value"]
    assert "e-mail" in by_line[2].reason and "last_name" in by_line[5].reason


def test_cli_dry_run_then_apply_with_a_report(runner, crm, tmp_path):
    source, report = tmp_path / "clients.csv", tmp_path / "report.csv"
    source.write_bytes(csv_bytes())
    result = runner.invoke(args=["data", "import", str(source), "--portal", "portal-a",
                                 "--report", str(report), "--category", "Врач"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "Nothing was written" in result.output
    assert "refused two_contacts: 1" in result.output
    text = report.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("line;phone;status")
    assert "duplicate_phone" in text and len(text.splitlines()) == 9
    assert not Card.select().where(Card.number == "79161111111").exists()
    result = runner.invoke(args=["data", "import", str(source), "--portal", "portal-a",
                                 "--apply", "--category", "Врач"])
    assert result.exit_code == 0, result.output
    assert "applied" in result.output and "1 created" in result.output
    assert AuditEntry.get(AuditEntry.action == "data.import").actor.startswith("cli")


def test_imported_cards_write_our_fields_to_their_contacts(crm):
    import json

    from activities.contacts import UF_BALANCE
    from api.models import Outbox

    crm.client_endpoint = "https://a.bitrix24.ru/rest/"
    crm.status = "active"
    crm.save()
    Contact.create(portal=crm, contact_id=77, phone="79161111111")
    run(crm, csv_bytes(), apply=True)
    card = Card.get(Card.number == "79161111111")
    assert card.contact_id == 77  # matched to the contact by phone
    [row] = list(Outbox.select())
    call = json.loads(row.calls)[f"c{card.id}"]
    assert call[0] == "crm.contact.update" and call[1]["id"] == 77
    assert call[1]["fields"][UF_BALANCE] == "1500.50"
    run(crm, csv_bytes(), apply=True)
    assert Outbox.select().count() == 1  # unchanged lines write nothing
