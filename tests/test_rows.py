"""api.data.rows.new_row leaves a row exactly as `model(**fields)` does: the same __data__
in the same order, the same related rows, the same row in the database once inserted."""
from __future__ import annotations

from datetime import datetime

import pytest

from api.data import audit, rows
from api.ledger import sql
from api.models import AuditEntry, Card, Notification, Portal
from notifications import notices

WHEN = datetime(2026, 3, 1, 12, 30, 15, 123456)
CALLED = {"next_attempt_at", "created_at"}  # defaults that are callables: a fresh time


def _compare(model, related: dict, values: dict) -> None:
    fast, slow = rows.new_row(model, dict(related), dict(values)), model(**related, **values)
    assert type(fast) is model
    assert list(fast.__data__) == list(slow.__data__)
    for name, value in slow.__data__.items():
        if name in CALLED and name not in values:
            assert type(fast.__data__[name]) is type(value)
        else:
            assert fast.__data__[name] == value and type(fast.__data__[name]) is type(value)
    assert fast._dirty == slow._dirty
    assert fast.__rel__.keys() == slow.__rel__.keys()
    assert all(fast.__rel__[k] is slow.__rel__[k] for k in slow.__rel__)


def test_same_data_as_peewee_for_many_shapes():
    portal, card = Portal(id=7, member_id="m"), Card(id=9, number="79160000000")
    for rel in ({"portal": portal, "card": card}, {"portal": 7, "card": None},
                {"portal": portal, "card": 9}, {"portal": None, "card": card}):
        for extra in ({}, {"status": "failed", "error": "x"}, {"created_at": WHEN},
                      {"created_at": WHEN, "next_attempt_at": WHEN, "attempts": 3}):
            _compare(Notification, rel, {"key": "k", "channel": "sms", "template": "t",
                                         "recipient": "1", "subject": None, "body": "b",
                                         **extra})
    for portal_value in (portal, 7, None):
        _compare(AuditEntry, {"portal": portal_value},
                 {"actor": "a", "action": "POST /x", "target": None, "source": "127.0.0.1",
                  "details": '{"status": 201}', "created_at": WHEN})


def test_not_a_field_goes_to_peewee():
    row = rows.new_row(Notification, {"portal": 7, "card": None}, {"key": "k", "body": "b",
                                                                    "not_a_field": 1})
    assert row.not_a_field == 1 and "not_a_field" not in row.__data__


def _read(model, row_id) -> dict:
    found = model.get_by_id(row_id).__data__
    return {k: v for k, v in found.items() if k != "id"}


@pytest.mark.parametrize("answer", [True, False])
def test_stored_rows_match_peewee(app, portal, answer):
    card = Card.create(portal=portal, number="79161234567", first_name="A", tier="Base")
    for n, extra in enumerate(({}, {"status": "failed", "error": "Ошибка"})):
        values = {"channel": "sms", "template": "accrual_sms", "recipient": "79161234567",
                  "subject": None, "body": "Текст <b>{{x}}</b>", "created_at": WHEN,
                  "next_attempt_at": WHEN, **extra}
        with sql.db.atomic():
            notices.insert(portal, card, f"fast{n}", answer=answer, **values)
        slow = Notification(portal=portal, card=card, key=f"slow{n}", **values)
        slow_id = sql.insert_row(slow, unique=("portal", "key"))
        fast = Notification.get(Notification.key == f"fast{n}")
        assert {**_read(Notification, fast.id), "key": None} == \
               {**_read(Notification, slow_id), "key": None}
    defaults = Notification.get(Notification.key == "fast0")
    assert (defaults.status, defaults.attempts, defaults.throttles) == ("pending", 0, 0)

    with sql.db.atomic():
        audit.record(portal, "api:lk_x", "POST /y", target="card:1", source="1.2.3.4",
                     details={"status": 201, "replayed": False}, now=WHEN, answer=answer)
    slow = AuditEntry(portal=portal, actor="api:lk_x", action="POST /y", target="card:1",
                      source="1.2.3.4", details='{"status": 201, "replayed": false}',
                      created_at=WHEN)
    slow_id = sql.insert_row(slow)
    fast_id = AuditEntry.select(AuditEntry.id).order_by(AuditEntry.id).first().id
    assert _read(AuditEntry, fast_id) == _read(AuditEntry, slow_id)


def test_insert_row_binds_what_db_value_gives(app):
    """insert_row binds plain values as they are only where db_value would hand them back
    unchanged: every value of every field equals db_value's answer, type included."""
    from api.ledger import sql
    from api.models import ALL_TABLES

    samples = [None, "", "текст", " padded ", 0, -5, 7, True, 2.5, b"bytes", "12"]
    for model in ALL_TABLES:
        names = tuple(model._meta.fields)
        for name, field, keeps in sql._value_plan(model, names):
            for value in samples:
                if keeps is not None and (value is None or type(value) is keeps):
                    expected = field.db_value(value)
                    assert expected == value and type(expected) is type(value), (model, name)
