"""Import from a numeric contact field: keyset pages of contacts, each with a value a
line (its ID the line number); dry run first, applying twice changes nothing."""
from __future__ import annotations

from test_sync import ListingPortal, portal_b24, settings  # noqa: F401 (fixtures)

from api.models import ALL_TABLES, Card, Entry, Portal
from scheduler import crm_import

FIELD = "UF_CRM_BALLY"


def counts():
    return {m.__name__: m.select().count() for m in ALL_TABLES}


def crm(b24):
    from api.ledger import rules

    rules.save(Portal.get(),
               {"client_category_field": "UF_CRM_CATEGORY"}, "test")
    b24.add_contact(42, **{FIELD: "150.5"})
    b24.add_contact(43, **{FIELD: "-3"},
                    PHONE=[{"ID": "5", "VALUE_TYPE": "MOBILE", "VALUE": "+7 916 765-43-21"}])
    b24.add_contact(44, PHONE=[{"ID": "6", "VALUE_TYPE": "WORK", "VALUE": "+7 495 765-43-21"}],
                    **{FIELD: "10"})
    b24.add_contact(45)  # no value: not a client of the old program
    for cid in range(100, 160):  # more than one page of contacts
        b24.add_contact(cid, PHONE=[{"ID": "9", "VALUE_TYPE": "MOBILE",
                                     "VALUE": f"+7 917 000-01-{cid - 100:02d}"}])


def test_dry_run_then_apply_once(portal_b24, installed, settings):
    crm(portal_b24)
    before = counts()
    outcomes = []
    report = crm_import.run(installed, settings, FIELD, apply=False, actor="t",
                            categories=["Врач"], on_outcome=outcomes.append)
    assert counts() == before
    assert {o.line: (o.status, o.reason_code) for o in outcomes} == {
        42: ("created", None), 43: ("refused", "negative_balance"),
        44: ("refused", "landline_phone")}
    assert "UF_CRM_BALLY" in report.summary()
    crm_import.run(installed, settings, FIELD, apply=True, actor="t", categories=["Врач"])
    card = Card.get(Card.number == "79161234567")
    assert (card.contact_id, card.balance_kop, card.last_name) == (42, 15050, "Петрова")
    again = crm_import.run(installed, settings, FIELD, apply=True, actor="t", categories=["Врач"])
    assert again.counts["unchanged"] == 1
    assert Entry.select().where(Entry.kind == "import").count() == 1


def test_a_field_code_is_checked(installed, settings):
    import pytest

    from api.ledger.errors import InvalidInput

    with pytest.raises(InvalidInput):
        crm_import.run(installed, settings, "NAME; DROP", apply=False, actor="t")


def test_cli(runner, portal_b24, installed):
    crm(portal_b24)
    result = runner.invoke(args=["data", "import-crm", "--portal", installed.member_id,
                                 "--field", FIELD, "--category", "Врач"])
    assert result.exit_code == 0, result.output
    assert "1 created" in result.output and "refused landline_phone: 1" in result.output
