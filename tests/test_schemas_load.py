"""api.schemas.StrictSchema loads a body on a shortcut: the same result as marshmallow's own
load for valid bodies, and marshmallow's own errors for the rest."""
from __future__ import annotations

import itertools

import pytest
from marshmallow import Schema, ValidationError

from api import schemas

MONEY = ["100.00", "1500.50", "0.01", 100, 1500.5, 0, "0", -5, "-5", "1.005", "1e3", "",
         "abc", None, True, [], {}, "100.00\x00", " 100 ", 10**15, "9" * 40, 1.0e300]
TEXT = ["deal-1001", "", "x" * 100, "x" * 101, "a\tb", "a\nb", "\x00", None, 5, ["x"],
        "Сделка №1", "  "]
FLAGS = [True, False, "true", 1, 0, None, "yes"]
BODIES = {
    schemas.Accrual: {"amount": MONEY, "reference": TEXT, "comment": TEXT},
    schemas.Debit: {"amount": MONEY, "reference": TEXT, "order_amount": MONEY,
                    "partial": FLAGS, "comment": TEXT},
    schemas.Reversal: {"reference": TEXT, "comment": TEXT},
    schemas.Adjustment: {"amount": MONEY, "reason": TEXT},
}


def _bodies(shape: dict):
    """Each field alone with every value, the common shapes, absences and extras."""
    names = list(shape)
    yield {}
    for name, values in shape.items():
        for value in values:
            yield {name: value}
            yield {**{n: shape[n][0] for n in names}, name: value}
            yield {names[0]: shape[names[0]][0], name: value}
    for combo in itertools.product(*(values[:3] for values in shape.values())):
        yield dict(zip(names, combo))
    yield {**{n: shape[n][0] for n in names}, "extra": 1}
    yield {"extra": 1}


def _outcome(load, data):
    try:
        return "ok", load(data)
    except ValidationError as exc:
        return "error", exc.messages, exc.valid_data


@pytest.mark.parametrize("schema_class", list(BODIES))
def test_the_shortcut_loads_what_marshmallow_loads(schema_class):
    schema, ok, errors = schema_class(), 0, 0
    for body in _bodies(BODIES[schema_class]):
        fast = _outcome(schema.load, dict(body))
        slow = _outcome(lambda data: Schema.load(schema, data), dict(body))
        assert fast == slow, body
        if fast[0] == "ok":
            assert list(fast[1]) == list(slow[1])  # the same key order
            ok += 1
        else:
            errors += 1
    assert ok > 20 and errors > 20


def test_what_is_not_a_plain_body_goes_to_marshmallow():
    schema = schemas.Accrual()
    for data in (["amount"], "amount", None, 5):
        assert _outcome(schema.load, data) == _outcome(lambda d: Schema.load(schema, d), data)
    assert schema.load({"amount": "1"}, partial=True) == {"amount": 100}
    with pytest.raises(ValidationError):
        schema.load({"amount": "1", "x": 1})
    assert schema.load({"amount": "1", "x": 1}, unknown="exclude") == {"amount": 100}


@pytest.mark.parametrize("body", [{"amount": "abc"}, {"amount": "1", "extra": True},
                                  {"reference": "x"}, {"amount": "-1"}, {"amount": "1.001"},
                                  {"amount": 5, "comment": ""}])
def test_error_answers_over_http(api, body, monkeypatch):
    api.new_card()
    fast = api.op("79161234567", "accruals", body)
    monkeypatch.setattr(schemas.StrictSchema, "load", Schema.load)
    slow = api.op("79161234567", "accruals", body)
    assert fast.status_code == slow.status_code == 422
    assert fast.get_json() == slow.get_json()
