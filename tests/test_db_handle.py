"""The shared handle gives transactions the database itself (api.db.Handle): the same
transactions, savepoints and rollbacks, without a proxy lookup at each of their steps."""
from __future__ import annotations

import pytest

from api.db import db
from api.models import Portal


def test_a_transaction_is_bound_to_the_database_not_the_proxy(app):
    for made in (db.atomic(), db.transaction()):
        assert made.db is db.obj
    with db.atomic():
        assert db.savepoint().db is db.obj


def test_nested_blocks_still_roll_back_on_their_own(app):
    with db.atomic():
        Portal.create(member_id="kept", domain="k.bitrix24.ru")
        with pytest.raises(RuntimeError), db.atomic():
            Portal.create(member_id="undone", domain="u.bitrix24.ru")
            raise RuntimeError("inner block fails")
    assert [p.member_id for p in Portal.select()] == ["kept"]
    with pytest.raises(RuntimeError), db.atomic():
        Portal.create(member_id="outer", domain="o.bitrix24.ru")
        raise RuntimeError("outer block fails")
    assert Portal.select().count() == 1
