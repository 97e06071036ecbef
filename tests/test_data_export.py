"""Exports: cards with balance, tier and totals, and a period's movements, as streamed CSV
through the CLI and the REST API; the audit trail pages and filters."""
from __future__ import annotations

import csv
import io

from api.data import exports
from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)

from api.models import AuditEntry


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=";"))


def test_every_export_of_the_client_base_is_in_the_audit_trail(api, admin, installed):
    """Security review F7: the whole client base could be read out with no trace."""
    api.new_card()
    assert api.get("/api/v1/exports/cards.csv").status_code == 200
    assert api.get("/api/v1/exports/movements.csv?from=2026-01-01&to=2026-12-31").status_code == 200
    assert admin.get("/b24/app/data/cards.csv").status_code == 200
    exports_seen = [(row.actor.split(":")[0], row.details)
                    for row in AuditEntry.select().where(AuditEntry.action == "data.export")
                    .order_by(AuditEntry.id)]
    assert [details for _actor, details in exports_seen] == [
        '{"file": "cards.csv"}', '{"file": "movements-2026-01-01-2026-12-31.csv"}',
        '{"file": "cards.csv"}']
    assert exports_seen[0][0] == "api" and exports_seen[2][0] != "api"


def test_cards_csv_has_balance_tier_and_totals(api):
    number = api.new_card(last_name="=HYPERLINK(\"x\")")["number"]
    api.op(number, "accruals", {"amount": "60000", "reference": "d1"})
    api.op(number, "debits", {"amount": "100", "reference": "d2"})
    response = api.get("/api/v1/exports/cards.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    header, row = parse(response.get_data(as_text=True))
    card = dict(zip(header, row))
    assert card["card"] == number and card["tier"] == "Серебряный"
    assert (card["balance"], card["purchases"], card["accrued_total"], card["spent_total"]) == \
        ("1700.00", "60000.00", "1800.00", "100.00")
    assert card["last_name"].startswith("'=")  # a spreadsheet must not run it


def test_movements_csv_is_the_period_only(api):
    number = api.new_card()["number"]
    api.op(number, "accruals", {"amount": "1000", "reference": "d1"})
    today = exports.Entry.get().created_at.date()
    rows = parse(api.get(f"/api/v1/exports/movements.csv?from={today}&to={today}")
                 .get_data(as_text=True))
    assert rows[0][:4] == ["id", "created_at_utc", "card", "kind"]
    assert [(r[2], r[3], r[4]) for r in rows[1:]] == [(number, "accrual", "30.00")]
    before = parse(api.get("/api/v1/exports/movements.csv?from=2020-01-01&to=2020-01-31")
                   .get_data(as_text=True))
    assert before[1:] == []


def test_movements_need_a_valid_period(api):
    response = api.get("/api/v1/exports/movements.csv?from=2026-02-01&to=2026-01-01")
    assert response.status_code == 422 and "to" in response.json["error"]["fields"]
    assert api.get("/api/v1/exports/movements.csv").status_code == 422


def test_exports_need_a_key_and_show_only_the_portal(client, api):
    assert client.get("/api/v1/exports/cards.csv").status_code == 401
    from api.auth import create_key
    from api.models import Portal

    other = Portal.create(member_id="portal-b")
    api.new_card()
    foreign = client.get("/api/v1/exports/cards.csv",
                         headers={"Authorization": f"Bearer {create_key(other)}"})
    assert parse(foreign.get_data(as_text=True))[1:] == []


def test_export_pages_by_keyset(api, monkeypatch):
    monkeypatch.setattr(exports, "PAGE_ROWS", 2)
    numbers = [api.new_card(phone=f"+7916000000{i}")["number"] for i in range(5)]
    rows = parse(api.get("/api/v1/exports/cards.csv").get_data(as_text=True))
    assert [r[0] for r in rows[1:]] == numbers  # all five, in id order, across three pages


def test_cli_exports_cards_and_movements(runner, api, tmp_path):
    number = api.new_card()["number"]
    api.op(number, "accruals", {"amount": "1000", "reference": "d1"})
    out = tmp_path / "cards.csv"
    result = runner.invoke(args=["data", "export", "cards", "--portal", "portal-a", "-o", str(out)])
    assert result.exit_code == 0 and "Exported 1 cards" in result.output
    assert parse(out.read_text(encoding="utf-8"))[1][0] == number
    result = runner.invoke(args=["data", "export", "movements", "--portal", "portal-a",
                                 "--from", "2000-01-01", "--to", "2100-01-01"])
    assert result.exit_code == 0 and "accrual" in result.output


def test_api_writes_are_in_the_audit_trail_without_phones(api):
    number = api.new_card()["number"]
    api.op(number, "accruals", {"amount": "1000", "reference": "d1"}, idem="a-1")
    api.put("/api/v1/rules", json={"welcome_bonus": "10"})
    api.get("/api/v1/cards")  # reads are not recorded
    page = api.get("/api/v1/audit?per_page=2").json
    assert [i["action"] for i in page["items"]] == ["PUT /api/v1/rules",
                                                    "POST /api/v1/cards/<number>/accruals"]
    assert page["has_more"] is True
    accrual = page["items"][1]
    assert accrual["actor"].startswith("api:") and accrual["actor"].endswith(" (tests)")
    assert accrual["source"] == "127.0.0.1"
    assert accrual["target"].startswith("card:") and accrual["details"]["idempotency_key"] == "a-1"
    assert not AuditEntry.select().where(AuditEntry.target.contains(number[1:])
                                         | AuditEntry.details.contains(number[1:])).exists()
    only = api.get("/api/v1/audit?action=PUT").json["items"]
    assert [i["action"] for i in only] == ["PUT /api/v1/rules"]
    text = api.get("/api/v1/audit.csv").get_data(as_text=True)
    # The export itself is the newest line: reading the trail out is recorded too.
    assert parse(text)[0][0] == "id" and len(parse(text)) == 5
    assert parse(text)[1][3] == "data.export"


def test_a_movement_and_its_audit_line_commit_together(api, monkeypatch):
    from api.data import audit
    from api.models import Entry

    number = api.new_card()["number"]
    entries = Entry.select().count()

    def broken(*args, **kwargs):
        raise RuntimeError("the trail's table is full")

    monkeypatch.setattr(audit, "_append", broken)  # what writes every line (record's too)
    assert api.op(number, "accruals", {"amount": "1000"}, idem="a-lost").status_code == 500
    assert Entry.select().count() == entries  # no movement without its line
    monkeypatch.undo()
    assert api.op(number, "accruals", {"amount": "1000"}, idem="a-lost").status_code == 201
    replay = api.op(number, "accruals", {"amount": "1000"}, idem="a-lost")
    assert replay.headers["Idempotency-Hit"] == "true"
    lines = [(i["action"], i["details"]["replayed"])
             for i in api.get("/api/v1/audit?action=POST%20/api/v1/cards/%3Cnumber%3E/accr")
             .json["items"]]
    assert lines == [("POST /api/v1/cards/<number>/accruals", True),
                     ("POST /api/v1/cards/<number>/accruals", False)]


def test_audit_query_is_validated(api):
    response = api.get("/api/v1/audit?per_page=100000")
    assert response.status_code == 422 and "per_page" in response.json["error"]["fields"]


def test_a_page_action_is_recorded_but_its_confirmation_is_not(installed, b24p, admin):
    from test_pages import text
    from test_pages_clients import form_key

    from api.ledger import cards

    cards.create_card(installed, {"phone": "+79161234567", "last_name": "Петрова",
                                  "first_name": "Анна", "client_category": "Врач"}, actor="t")
    key = form_key(text(admin.get("/b24/app/clients/79161234567")))
    form = {"amount": "100", "reason": "Подарок", "key": key}
    admin.post("/b24/app/clients/79161234567/adjust", form)  # the confirmation page
    assert not AuditEntry.select().exists()
    admin.post("/b24/app/clients/79161234567/adjust", {**form, "confirmed": "1"})
    row = AuditEntry.get()
    assert row.action == "POST /b24/app/clients/<number>/adjust"
    assert row.actor.startswith("b24:user_1") and row.target.startswith("card:")


def test_merge_through_the_api_moves_the_balance_once(api):
    a = api.new_card(phone="+79161111111")["number"]
    b = api.new_card(phone="+79162222222")["number"]
    api.op(a, "adjustments", {"amount": "50", "reason": "старт"})
    for _ in range(2):
        response = api.post(f"/api/v1/cards/{a}/merge", json={"into": b})
        assert response.status_code == 200, response.json
        assert response.json["number"] == b and response.json["balance"] == "50.00"
    assert api.post(f"/api/v1/cards/{b}/merge", json={"into": b}).status_code == 409
    assert api.post(f"/api/v1/cards/{b}/merge", json={}).status_code == 422
    assert AuditEntry.select().where(AuditEntry.action == "card.merge").count() == 1


def test_the_end_of_time_is_a_422_not_a_500(api):
    for path in ("/api/v1/exports/movements.csv?from=2026-01-01&to=9999-12-31",
                 "/api/v1/audit?to=9999-12-31"):
        response = api.get(path)
        assert response.status_code == 422 and "to" in response.json["error"]["fields"]
