"""api.jsonio.JSONProvider writes what Flask's own provider writes, with encoders built once."""
from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api.jsonio import JSONProvider

VALUES = [None, {"a": 1, "b": [1, 2.5, "три", True]}, {"z": 1, "a": {"y": None, "b": "\u2028"}},
          [datetime.date(2026, 12, 1), datetime.datetime(2026, 12, 1, 10, 0)],
          {"d": decimal.Decimal("1.10"), "u": uuid.UUID(int=7)}, "строка \"с\" \\ кавычками"]


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("sort_keys", [True, False])
@pytest.mark.parametrize("options", [{}, {"separators": (",", ":")}, {"indent": 2},
                                     {"separators": (", ", ": "), "indent": 4}])
def test_the_same_text_as_flask(ensure_ascii, sort_keys, options):
    app = Flask(__name__)
    ours, theirs = JSONProvider(app), DefaultJSONProvider(app)
    for provider in (ours, theirs):
        provider.ensure_ascii, provider.sort_keys = ensure_ascii, sort_keys
    for value in VALUES:
        assert ours.dumps(value, **options) == theirs.dumps(value, **options)
        assert ours.dumps(value, **options) == theirs.dumps(value, **options)  # reused


def test_other_options_and_errors_are_flasks():
    app = Flask(__name__)
    ours, theirs = JSONProvider(app), DefaultJSONProvider(app)
    assert ours.dumps({"b": 1, "a": 2}, sort_keys=True) == theirs.dumps({"b": 1, "a": 2},
                                                                      sort_keys=True)
    with pytest.raises(TypeError):
        ours.dumps({"x": object()})


def test_a_changed_setting_still_takes():
    provider = JSONProvider(Flask(__name__))
    provider.ensure_ascii = True
    assert provider.dumps("я") == '"\\u044f"'
    provider.ensure_ascii = False
    assert provider.dumps("я") == '"я"'


def test_the_api_answers_through_it(app):
    assert isinstance(app.json, JSONProvider) and app.json.ensure_ascii is False
    assert app.test_client().get("/api/v1/healthz").get_data(as_text=True).endswith("}\n")
