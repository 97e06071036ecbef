"""api.schemas.Answer dumps the views' dicts on a shortcut: the same output as
marshmallow's own dump, field for field, for every answer schema."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from marshmallow import Schema, post_dump

from api import schemas

NOW = datetime(2026, 3, 1, 9, 30, 15, 123456)
NEXT = {"name": "Серебряный", "threshold_kop": 5_000_000, "remaining_kop": 4_899_950}
CARD = {"id": 5, "portal": 1, "number": "79161234567", "contact_id": 42, "last_name": "Петрова",
        "first_name": "Анна", "middle_name": None, "client_category": "Врач",
        "email": "anna@example.ru", "birthdate": date(1990, 5, 17), "manager_id": None,
        "status": "active", "tier": "Базовый", "balance_kop": 123_450, "purchases_kop": 100_050,
        "created_at": NOW, "created": True, "next_tier": NEXT, "held_kop": 0,
        "available_kop": 123_450}
LIST_CARD = {k: v for k, v in CARD.items() if k not in ("held_kop", "available_kop")}
ACCRUAL = {"card_number": "79161234567", "kind": "accrual", "entry_id": 9, "amount_kop": 300,
           "balance_kop": 123_450, "tier": "Базовый", "tier_before": "Базовый",
           "reference": None, "percent": Decimal("3.00"), "purchase_kop": 10_000,
           "created_at": NOW.replace(tzinfo=timezone.utc)}
REVERSAL = {"card_number": "79161234567", "kind": "reversal", "entry_ids": [3, 4],
            "amount_kop": -300, "balance_kop": 0, "returned_debit_kop": 0,
            "reversed_accrual_kop": 300, "unrecovered_kop": 0, "reference": "deal-1",
            "created_at": NOW.isoformat()}
ENTRY = {"id": 3, "kind": "debit", "amount_kop": -500, "balance_after_kop": 1000,
         "reference": "o-2", "purchase_kop": None, "percent": None, "reverses_id": None,
         "actor": "api:lk_x", "comment": None, "created_at": NOW}
CASES = [
    (schemas.Card, CARD), (schemas.Card, {**CARD, "next_tier": None}),
    (schemas.Card, LIST_CARD), (schemas.NextTier, NEXT),
    (schemas.CardPage, {"items": [LIST_CARD, LIST_CARD], "page": 1, "per_page": 50,
                        "has_more": False}),
    (schemas.OperationResult, ACCRUAL), (schemas.OperationResult, REVERSAL),
    (schemas.Entry, ENTRY),
    (schemas.EntryPage, {"items": [ENTRY], "page": 2, "per_page": 1, "has_more": True}),
    (schemas.Health, {"status": "ok", "database": "ok"}),
]


@pytest.fixture
def marshmallow_only(monkeypatch):
    """Answer as plain marshmallow: its own accessor and its own dump."""
    def dump(schema_class, obj):
        with monkeypatch.context() as patch:
            patch.setattr(schemas.Answer, "dump", Schema.dump)
            patch.setattr(schemas.Answer, "get_attribute", Schema.get_attribute)
            return schema_class().dump(obj)
    return dump


@pytest.mark.parametrize("schema_class,obj", CASES)
def test_the_shortcut_dumps_what_marshmallow_dumps(schema_class, obj, marshmallow_only):
    assert issubclass(schema_class, schemas.Answer)
    expected = marshmallow_only(schema_class, obj)
    assert schema_class().dump(obj) == expected
    assert list(schema_class().dump(obj)) == list(expected)  # the same keys in the same order


def test_a_schema_with_a_dump_hook_or_many_takes_marshmallows_way():
    class Hooked(schemas.Answer):
        status = schemas.fields.String()

        @post_dump
        def shout(self, data, **kwargs):
            return {k: v.upper() for k, v in data.items()}

    assert Hooked().dump({"status": "ok"}) == {"status": "OK"}
    assert schemas.Health(many=True).dump([{"status": "ok", "database": "up"}]) == [
        {"status": "ok", "database": "up"}]
