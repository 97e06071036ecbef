"""api.data.audit writes a request line's details on a shortcut: the same JSON text as
its encoder, for every status, key and replay flag a request can have."""
from __future__ import annotations

import itertools

from api.data import audit

KEYS = [None, "", "order-1001-accrual", 'quo"te', "back\\slash", "Заказ №1", "tab\there",
        "\x00nul", "emoji 🎉", "</script>", "\u2028", " spaced "]


def test_the_shortcut_writes_what_the_encoder_writes():
    for status, key, replayed in itertools.product((200, 201, 204, 302, 0), KEYS,
                                                   (True, False)):
        expected = audit._DETAILS({"status": status, "idempotency_key": key,
                                   "replayed": replayed})
        assert audit._request_details(status, key, replayed) == expected


def test_other_types_go_to_the_encoder():
    class Status(int):
        def __repr__(self):
            return "Status()"

    for status, key, replayed in ((Status(201), "k", False), (201, 5, True), (201, "k", 1),
                                  (201.0, None, False)):
        assert audit._request_details(status, key, replayed) == audit._DETAILS(
            {"status": status, "idempotency_key": key, "replayed": replayed})
