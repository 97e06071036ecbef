"""Holds: reserve, capture (all or part), release, expiry; never overspent under
parallel debits, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

import pytest
from test_concurrency import run_in_threads

from api.clock import utcnow
from api.ledger import cards, holds, operations
from api.ledger.errors import InsufficientBalance
from api.models import Card, Entry, Hold

NUMBER = "79161234567"


@pytest.fixture
def funded(api):
    api.new_card()
    assert api.op(NUMBER, "adjustments", {"amount": "1000", "reason": "пополнение"}).status_code == 201
    return api


def hold(api, amount, idem=None, **extra):
    return api.op(NUMBER, "holds", {"amount": amount, **extra}, idem=idem)


def test_a_hold_makes_bonuses_unspendable_and_the_card_shows_it(funded):
    made = hold(funded, "600", reference="deal-9")
    assert made.status_code == 201
    body = made.get_json()
    assert (body["status"], body["amount"], body["available"]) == ("active", "600.00", "400.00")
    card = funded.get(f"/api/v1/cards/{NUMBER}").get_json()
    assert (card["balance"], card["held"], card["available"]) == ("1000.00", "600.00", "400.00")
    short = funded.op(NUMBER, "debits", {"amount": "500"})
    assert short.status_code == 422 and short.get_json()["error"]["code"] == "insufficient_balance"
    assert "400.00" in short.get_json()["error"]["message"]
    partial = funded.op(NUMBER, "debits", {"amount": "500", "partial": True})
    assert partial.get_json()["debited"] == "400.00"
    assert hold(funded, "1").status_code == 422  # nothing left to hold


def test_capture_part_debits_it_and_frees_the_rest(funded):
    hold_id = hold(funded, "600").get_json()["hold_id"]
    captured = funded.post(f"/api/v1/holds/{hold_id}/capture", json={"amount": "250"}, idem="c1")
    assert captured.status_code == 201, captured.get_json()
    body = captured.get_json()
    assert (body["status"], body["debited"], body["balance"]) == ("captured", "250.00", "750.00")
    entry = Entry.get_by_id(body["entry_id"])
    assert entry.kind == "debit" and entry.amount_kop == -25_000
    card = funded.get(f"/api/v1/cards/{NUMBER}").get_json()
    assert (card["held"], card["available"]) == ("0.00", "750.00")
    again = funded.post(f"/api/v1/holds/{hold_id}/capture", json={"amount": "250"}, idem="c1")
    assert again.headers.get("Idempotency-Hit") == "true"
    assert Entry.select().where(Entry.kind == "debit").count() == 1
    closed = funded.post(f"/api/v1/holds/{hold_id}/capture", json={}, idem="c2")
    assert closed.status_code == 409 and closed.get_json()["error"]["code"] == "hold_closed"
    too_much = hold(funded, "100").get_json()["hold_id"]
    over = funded.post(f"/api/v1/holds/{too_much}/capture", json={"amount": "100.01"}, idem="c3")
    assert over.status_code == 422


def test_release_gives_them_back(funded):
    hold_id = hold(funded, "600").get_json()["hold_id"]
    released = funded.post(f"/api/v1/holds/{hold_id}/release", idem="r1")
    assert released.status_code == 200 and released.get_json()["status"] == "released"
    assert funded.get(f"/api/v1/cards/{NUMBER}").get_json()["available"] == "1000.00"
    assert Entry.select().where(Entry.kind == "debit").count() == 0


def test_an_expired_hold_frees_itself_and_cannot_be_captured(funded, portal):
    made = hold(funded, "600", expires_in=60).get_json()
    card_id, later = Card.get(number=NUMBER).id, utcnow() + timedelta(seconds=61)
    assert holds.held_kop(card_id, utcnow() + timedelta(seconds=58)) == 60_000  # not early
    assert holds.held_kop(card_id, later) == 0  # nor late
    outcome = operations.debit(portal, NUMBER, 100_000, key="after", actor="t", now=later)
    assert outcome.result["debited_kop"] == 100_000  # all of it: the hold lapsed
    with pytest.raises(holds.HoldClosed):
        holds.capture(portal, made["hold_id"], key="late", actor="t", now=later)


def test_hold_input_is_checked(funded, api):
    assert hold(funded, "0").status_code == 422
    assert hold(funded, "10", expires_in=5).status_code == 422
    assert hold(funded, "10", idem="same").status_code == 201
    assert hold(funded, "11", idem="same").status_code == 409  # same key, other body
    assert api.post("/api/v1/holds/9999/release", idem="x").status_code == 404
    assert api.post("/api/v1/cards/79160000000/holds", json={"amount": "1"},
                    idem="y").status_code == 404


def test_a_hold_is_never_overspent_under_parallel_debits(portal):
    card, _ = cards.create_card(portal, {"phone": "9161234567", "last_name": "П",
                                         "first_name": "А", "client_category": "В"}, actor="t")
    operations.adjust(portal, card.number, 10_000, key="fund", actor="t", reason="Пополнение")
    made = holds.hold(portal, card.number, 6_000, key="h", actor="t").result

    def worker(i):
        for n in range(6):  # 8 × 6 × 100 = 4 800 asked, 4 000 free
            try:
                operations.debit(portal, card.number, 100, key=f"t{i}-{n}", actor="t")
                yield 100
            except InsufficientBalance:
                yield 0

    debited = sum(run_in_threads(worker))
    assert debited == 4_000  # the held 6 000 stayed out of reach
    captured = holds.capture(portal, made["hold_id"], key="cap", actor="t").result
    assert captured["debited_kop"] == 6_000 and captured["balance_kop"] == 0
    assert Hold.get_by_id(made["hold_id"]).status == "captured"


def test_parallel_holds_and_debits_never_reserve_more_than_the_balance(portal):
    card, _ = cards.create_card(portal, {"phone": "9161234567", "last_name": "П",
                                         "first_name": "А", "client_category": "В"}, actor="t")
    operations.adjust(portal, card.number, 10_000, key="fund", actor="t", reason="Пополнение")

    def worker(i):
        for n in range(4):  # 8 × 4 × 700 = 22 400 asked for, 10 000 there
            try:
                if (i + n) % 2:
                    holds.hold(portal, card.number, 700, key=f"h{i}-{n}", actor="t")
                    yield "hold", 700
                else:
                    operations.debit(portal, card.number, 700, key=f"d{i}-{n}", actor="t")
                    yield "debit", 700
            except InsufficientBalance:
                yield "refused", 0

    outcomes = run_in_threads(worker)
    done = Card.get_by_id(card.id)
    held = holds.held_kop(card.id, utcnow())
    debited = sum(kop for kind, kop in outcomes if kind == "debit")
    assert held == sum(kop for kind, kop in outcomes if kind == "hold")
    assert done.balance_kop == 10_000 - debited and 0 <= held <= done.balance_kop
    assert done.balance_kop - held < 700  # it stopped only when no 700 was left free


def test_a_hold_is_captured_once_under_parallel_captures(portal):
    card, _ = cards.create_card(portal, {"phone": "9161234567", "last_name": "П",
                                         "first_name": "А", "client_category": "В"}, actor="t")
    operations.adjust(portal, card.number, 10_000, key="fund", actor="t", reason="Пополнение")
    hold_id = holds.hold(portal, card.number, 6_000, key="h", actor="t").result["hold_id"]

    def worker(i):
        try:
            yield holds.capture(portal, hold_id, key=f"cap{i}", actor="t").result["debited_kop"]
        except holds.HoldClosed:
            yield 0

    assert sorted(run_in_threads(worker)) == [0] * 7 + [6_000]
    assert Card.get_by_id(card.id).balance_kop == 4_000
    assert Entry.select().where(Entry.kind == "debit").count() == 1


def test_a_workflow_holds_then_captures_or_releases(app, client, b24, installed):
    from test_b24_activities import make_card, post, replies, tick

    make_card(installed)
    operations.adjust(installed, NUMBER, 100_000, key="fund", actor="t", reason="тест")
    post(client, "loyalty_bonus_hold", token="h1", Amount="600", ContactId="42", DealId="7")
    tick(app)
    held = replies(b24)[0]["RETURN_VALUES"]
    assert (held["Success"], held["Held"], held["Available"]) == ("Y", "600.00", "400.00")
    post(client, "loyalty_bonus_debit", token="d1", Amount="500", ContactId="42")
    post(client, "loyalty_bonus_capture_robot", document="DEAL_7", token="c1",
         HoldId=held["HoldId"], Amount="250")
    tick(app)
    refused, captured = (r["RETURN_VALUES"] for r in replies(b24)[1:3])
    assert refused["Success"] == "N" and "400.00" in refused["Error"]
    assert (captured["Success"], captured["Debited"], captured["Balance"]) == ("Y", "250.00", "750.00")
    assert Entry.get(Entry.kind == "debit").reference == "deal:7"  # a refund reverses it
    post(client, "loyalty_bonus_hold", token="h2", Amount="100", ContactId="42")
    tick(app)
    second = replies(b24)[3]["RETURN_VALUES"]["HoldId"]
    post(client, "loyalty_bonus_release", token="r1", HoldId=second)
    post(client, "loyalty_bonus_release", token="r2", HoldId=second)
    post(client, "loyalty_bonus_capture", token="c2", HoldId="")
    tick(app)
    released, again, missing = (r["RETURN_VALUES"] for r in replies(b24)[4:7])
    assert (released["Released"], released["Available"]) == ("Y", "750.00")
    assert again["Success"] == "N" and "отменён" in again["Error"]
    assert missing["Success"] == "N" and "HoldId" in missing["Error"]


def test_a_merge_moves_the_absorbed_cards_live_holds_to_the_survivor(funded, portal):
    from api.data import merges

    survivor = funded.new_card(phone="+7 916 111-22-33", first_name="Иван")["number"]
    assert funded.op(survivor, "adjustments", {"amount": "500", "reason": "п"}).status_code == 201
    made = hold(funded, "600", idem="h1", reference="deal-9").get_json()
    old = hold(funded, "100", idem="h-old", expires_in=60).get_json()
    Hold.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        Hold.id == old["hold_id"]).execute()
    assert funded.get(f"/api/v1/cards/{survivor}").get_json()["available"] == "500.00"
    merges.merge_cards(portal, Card.get(number=NUMBER), Card.get(number=survivor), actor="t")
    card = funded.get(f"/api/v1/cards/{survivor}").get_json()
    assert (card["balance"], card["held"], card["available"]) == ("1500.00", "600.00", "900.00")
    listed = funded.get(f"/api/v1/cards/{survivor}/holds").get_json()["items"]
    assert [h["hold_id"] for h in listed] == [made["hold_id"]]
    assert Hold.get_by_id(old["hold_id"]).card.number == NUMBER  # a lapsed one stays behind
    assert funded.op(survivor, "debits", {"amount": "901"}).status_code == 422
    again = hold(funded, "600", idem="h1", reference="deal-9")  # the original request, replayed
    assert again.headers.get("Idempotency-Hit") == "true"
    assert again.get_json()["hold_id"] == made["hold_id"] and Hold.select().count() == 2
    captured = funded.post(f"/api/v1/holds/{made['hold_id']}/capture", json={}, idem="c1")
    assert captured.status_code == 201, captured.get_json()
    body = captured.get_json()
    assert (body["card_number"], body["debited"], body["balance"]) == (survivor, "600.00", "900.00")
    assert Entry.get_by_id(body["entry_id"]).card.number == survivor
    assert Entry.get_by_id(body["entry_id"]).reference == "deal-9"
    card = funded.get(f"/api/v1/cards/{survivor}").get_json()
    assert (card["balance"], card["held"], card["available"]) == ("900.00", "0.00", "900.00")
