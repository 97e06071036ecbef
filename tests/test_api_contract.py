"""The REST API's contract beyond input (issue 13): 503 when the database is down, scoped
keys, readable UTF-8, English messages with stable codes, CSV cells that cannot run as
formulas, and saves of rules and settings that lose nothing (409 when stale)."""
from __future__ import annotations

import csv
import io
import re
import pytest
from test_concurrency import run_in_threads
from test_pages import ADMIN, Frame, b24p, empty_portal_settings  # noqa: F401

from api import create_app, migrations
from api.auth import create_key
from api.db import db
from api.ledger import cards, operations
from api.models import ApiKey, SchemaVersion

NUMBER = "79161234567"
CYRILLIC = re.compile("[\u0400-\u04ff]")


def error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]


# --- /healthz and a database that is down -------------------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_healthz_is_503_with_the_error_body_when_the_database_is_down(tmp_path, kind):
    # SQLite: the database path is a directory; PostgreSQL: nothing listens on the port.
    url = f"sqlite:///{tmp_path}" if kind == "sqlite" else "postgresql://u@127.0.0.1:9/none"
    app = create_app({"TESTING": True, "DATABASE_URL": url, "SECRET_KEY": "x"})
    for path in ("/healthz", "/api/v1/healthz", "/api/v1/cards"):
        response = app.test_client().get(path, headers={"Authorization": "Bearer lk_x"})
        found = error(response, 503)
        assert found["code"] == "database_unavailable" and "127.0.0.1" not in found["message"]
    db.close() if not db.is_closed() else None


def test_healthz_is_200_when_the_database_answers(client):
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok"}


# --- scopes ---------------------------------------------------------------------------

def key_client(client, portal, *scopes):
    headers = {"Authorization": f"Bearer {create_key(portal, 'scoped', scopes)}"}
    return lambda method, path, **kw: client.open(path, method=method, headers={
        **headers, **kw.pop("headers", {})}, **kw)


def test_each_scope_opens_only_its_endpoints(client, portal):
    cards.create_card(portal, {"phone": NUMBER, "last_name": "П", "first_name": "А",
                               "client_category": "В"}, actor="t")
    read, write = key_client(client, portal, "read"), key_client(client, portal, "write")
    admin = key_client(client, portal, "admin")
    assert read("GET", f"/api/v1/cards/{NUMBER}").status_code == 200
    assert read("GET", "/api/v1/rules").status_code == 200
    movement = dict(json={"amount": "100"}, headers={"Idempotency-Key": "s1"})
    assert error(read("POST", f"/api/v1/cards/{NUMBER}/accruals", **movement),
                 403)["code"] == "insufficient_scope"
    assert error(read("PUT", "/api/v1/rules", json={"bonus_lifetime_days": 10}),
                 403)["code"] == "insufficient_scope"
    assert write("POST", f"/api/v1/cards/{NUMBER}/accruals", **movement).status_code == 201
    assert error(write("GET", f"/api/v1/cards/{NUMBER}"), 403)["code"] == "insufficient_scope"
    for method, path in [("PUT", "/api/v1/rules"), ("GET", "/api/v1/settings/notifications"),
                         ("PUT", "/api/v1/settings/notifications")]:
        assert error(write(method, path, json={}), 403)["code"] == "insufficient_scope", path
    assert admin("PUT", "/api/v1/rules", json={"bonus_lifetime_days": 10}).status_code == 200
    assert admin("GET", "/api/v1/settings/notifications").status_code == 200
    assert error(admin("GET", f"/api/v1/cards/{NUMBER}"), 403)["code"] == "insufficient_scope"


def test_a_key_without_admin_cannot_change_unisender_keys(client, portal):
    site = key_client(client, portal, "read", "write")
    response = site("PUT", "/api/v1/settings/notifications",
                    json={"unisender_api_key": "attacker-key"})
    assert error(response, 403)["code"] == "insufficient_scope"
    assert "attacker-key" not in response.get_data(as_text=True)


def test_keys_create_takes_scopes_and_defaults_to_read_and_write(runner, app):
    made = runner.invoke(args=["keys", "create", "--portal", "p1", "--scope", "read"])
    assert made.exit_code == 0 and "with scopes read." in made.output
    plain = runner.invoke(args=["keys", "create", "--portal", "p1"])
    assert "with scopes read, write." in plain.output
    assert [k.scopes for k in ApiKey.select().order_by(ApiKey.id)] == ["read", "read write"]
    bad = runner.invoke(args=["keys", "create", "--portal", "p1", "--scope", "root"])
    assert bad.exit_code != 0 and "root" in bad.output
    assert "[read write]" in runner.invoke(args=["keys", "list", "--portal", "p1"]).output


def test_migration_0011_gives_existing_keys_every_scope(app, portal):
    db.execute_sql('ALTER TABLE "apikey" DROP COLUMN "scopes"')
    SchemaVersion.delete().where(SchemaVersion.name == "0011_api").execute()
    db.execute_sql('INSERT INTO "apikey" ("portal_id", "prefix", "key_hash", "created_at") '
                   "VALUES (%s, 'lk_old', 'h', '2026-01-01 00:00:00')".replace(
                       "%s", str(portal.id)))
    assert "0011_api" in migrations.migrate()
    assert ApiKey.get(ApiKey.prefix == "lk_old").scopes == "read write admin"


# --- UTF-8 and English ------------------------------------------------------------------

def test_json_is_utf8_not_escaped(api):
    api.new_card()
    body = api.get(f"/api/v1/cards/{NUMBER}").get_data(as_text=True)
    assert "Петрова" in body and "\\u04" not in body


@pytest.mark.parametrize("call", [
    lambda api: api.op(NUMBER, "accruals", {"amount": "abc"}),
    lambda api: api.op(NUMBER, "accruals", {"amount": "1,500"}),
    lambda api: api.op(NUMBER, "debits", {"amount": "5000"}),
    lambda api: api.op(NUMBER, "reversals", {"reference": "nothing"}),
    lambda api: api.op(NUMBER, "adjustments", {"amount": "0", "reason": "x"}),
    lambda api: api.get("/api/v1/cards/79990000000"),
    lambda api: api.get("/api/v1/cards/12"),
    lambda api: api.get("/api/v1/cards/lookup"),
    lambda api: api.post("/api/v1/cards", json={"phone": "9160000001"}),
    lambda api: api.put("/api/v1/rules", json={"tiers": [{"name": "A", "threshold": "5",
                                                          "percent": "101"}], "x": 1}),
    lambda api: api.put("/api/v1/rules", json=[1]),
    lambda api: api.put("/api/v1/settings/notifications",
                        json={"templates": {"accrual_sms": {"body": "{{ nope }}"}}}),
    lambda api: api.client.get("/api/v1/cards"),
], ids=lambda _: "call")
def test_error_messages_are_english_with_stable_codes(api, call):
    api.new_card()
    api.op(NUMBER, "accruals", {"amount": "1000", "reference": "deal-1"})
    response = call(api)
    assert 400 <= response.status_code < 500
    found = response.get_json()["error"]
    assert re.fullmatch(r"[a-z_]+", found["code"])
    assert not CYRILLIC.search(found["message"]), found
    assert not any(CYRILLIC.search(v) for v in found["fields"].values()), found


def test_the_catalog_translates_every_ledger_message():
    from api.ledger import errors
    from api.messages import english

    samples = [errors.CardNotFound("79161234567"), errors.ReferenceNotFound("d-1"),
               errors.CardExists("79161234567", 42), errors.CardExists("79161234567", None),
               errors.CardBlocked("79161234567"), errors.AlreadyAccrued("d-1", 1),
               errors.AlreadyReversed("d-1"), errors.IdempotencyConflict("k"),
               errors.InsufficientBalance(30_000), errors.MaxShareExceeded(50_000),
               errors.MissingFields(["phone"])]
    for exc in samples:
        assert not CYRILLIC.search(english(exc.message)), exc.message
        for text in exc.fields.values():
            assert not CYRILLIC.search(english(text)), text


# --- CSV --------------------------------------------------------------------------------

@pytest.mark.parametrize("hostile", ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)",
                                     "\tcmd", "\rcmd"])
def test_movements_csv_cells_cannot_run_as_formulas(client, installed, b24p, hostile):
    empty_portal_settings()
    card, _ = cards.create_card(installed, {"phone": NUMBER, "last_name": "П", "first_name": "А",
                                            "client_category": "В"}, actor="t")
    operations.accrue(installed, card.number, 10_000, key="a", actor="t", reference=hostile.strip()
                      or hostile, comment=hostile)
    operations.adjust(installed, card.number, -100, key="b", actor="t", reason="fix")
    frame = Frame(client)
    frame.login(ADMIN)
    response = frame.get("/b24/app/numbers/movements.csv", start="2020-01-01", end="2100-01-01")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")
                or (c.startswith("-") and not re.fullmatch(r"-[0-9.]+", c))]
    assert "'" + hostile in cells and "-1.00" in cells  # kept readable; numbers stay numbers


# --- saves of rules and settings ----------------------------------------------------------

def put(api, path, body, etag):
    return api.client.put(path, json=body, headers={**api.headers(), "If-Match": etag})


def test_a_stale_rules_save_is_409_version_conflict(api):
    first = api.get("/api/v1/rules")
    etag = first.headers["ETag"]
    saved = put(api, "/api/v1/rules", {"bonus_lifetime_days": 100}, etag)
    assert saved.status_code == 200 and saved.headers["ETag"] != etag
    stale = put(api, "/api/v1/rules", {"bonus_lifetime_days": 200}, etag)
    assert error(stale, 409)["code"] == "version_conflict"
    assert api.get("/api/v1/rules").get_json()["bonus_lifetime_days"] == 100
    assert put(api, "/api/v1/rules", {"bonus_lifetime_days": 300},
               saved.headers["ETag"]).status_code == 200


def test_a_stale_settings_save_is_409_version_conflict(api):
    etag = api.get("/api/v1/settings/notifications").headers["ETag"]
    assert put(api, "/api/v1/settings/notifications", {"sender_name": "A"},
               etag).status_code == 200
    stale = put(api, "/api/v1/settings/notifications", {"sender_name": "B"}, etag)
    assert error(stale, 409)["code"] == "version_conflict"
    assert api.get("/api/v1/settings/notifications").get_json()["sender_name"] == "A"


def in_threads(count, work):
    """work(i) in count threads started together (test_concurrency's runner)."""
    def worker(i):
        work(i)
        yield "done"

    assert run_in_threads(worker, count) == ["done"] * count


@pytest.mark.slow
def test_concurrent_partial_settings_saves_lose_nothing(app, api):
    from notifications.settings import NOTICES

    def flip(i):
        client = app.test_client()
        for on in (True, False, True, False):  # each thread flips its own notice, ending off
            response = client.put("/api/v1/settings/notifications",
                                  json={"notices": {NOTICES[i]: on}}, headers=api.headers())
            assert response.status_code == 200, response.get_json()

    in_threads(len(NOTICES), flip)
    notices = api.get("/api/v1/settings/notifications").get_json()["notices"]
    lost = [n for n in NOTICES if notices[n]]  # a stale merge put a notice back on
    assert lost == [], f"lost {len(lost)} of {len(NOTICES)} last saves"


@pytest.mark.slow
def test_twenty_concurrent_read_modify_write_saves_all_land(app, api):
    api.put("/api/v1/rules", json={"tiers": [{"name": "T0", "threshold": "0", "percent": "1"}]})
    conflicts = []

    def add_tier(i):
        client = app.test_client()
        for _ in range(200):  # retry on 409 with a fresh read, as a client should
            current = client.get("/api/v1/rules", headers=api.headers())
            tiers = current.get_json()["tiers"] + [
                {"name": f"T{i}", "threshold": str(i * 1000), "percent": "1"}]
            tiers.sort(key=lambda t: float(t["threshold"]))
            response = client.put("/api/v1/rules", json={"tiers": tiers},
                                  headers={**api.headers(), "If-Match": current.headers["ETag"]})
            if response.status_code == 200:
                return
            assert response.get_json()["error"]["code"] == "version_conflict"
            conflicts.append(i)
        raise AssertionError("never saved")

    in_threads(19, lambda i: add_tier(i + 1))
    names = {t["name"] for t in api.get("/api/v1/rules").get_json()["tiers"]}
    assert names == {f"T{i}" for i in range(20)}, f"lost {20 - len(names)} of 20"
    assert conflicts  # the saves really collided


# --- the OpenAPI document and what answers look like ------------------------------------

def test_openapi_documents_the_real_errors_money_and_timestamps(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    schemas_ = spec["components"]["schemas"]
    assert schemas_["ErrorResponse"]["required"] == ["error"]
    assert set(schemas_["ErrorBody"]["properties"]) == {"code", "message", "fields", "details"}
    debit = spec["paths"]["/api/v1/cards/{number}/debits"]["post"]
    assert {"400", "401", "403", "404", "409", "422", "503"} <= set(debit["responses"])
    assert "insufficient_balance" in debit["responses"]["422"]["description"]
    assert "default" not in debit["responses"]
    balance = schemas_["Card"]["properties"]["balance"]
    assert balance["type"] == "string" and re.fullmatch(balance["pattern"], "1500.50")
    assert not re.fullmatch(balance["pattern"], "-1.00")  # a balance is never negative
    assert re.fullmatch(schemas_["Adjustment"]["properties"]["amount"]["pattern"], "-100")
    assert schemas_["Card"]["properties"]["created_at"]["format"] == "date-time"
    assert debit["summary"] and debit["requestBody"]["content"]["application/json"]["example"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_answers_carry_offsets_and_created_is_always_boolean(api):
    api.new_card()
    card = api.get(f"/api/v1/cards/{NUMBER}").get_json()
    assert card["created"] is False and card["created_at"].endswith("+00:00")
    accrued = api.op(NUMBER, "accruals", {"amount": "100"}, idem="same").get_json()
    replayed = api.op(NUMBER, "accruals", {"amount": "100"}, idem="same").get_json()
    assert accrued["created_at"].endswith("+00:00") and replayed == accrued
    entry = api.get(f"/api/v1/cards/{NUMBER}/transactions").get_json()["items"][0]
    assert entry["created_at"].endswith("+00:00")
