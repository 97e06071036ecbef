"""api.application.App answers ensure_sync as Flask does, for every kind of callable."""
from __future__ import annotations

import functools

import pytest
from flask import Flask

from api.application import App


def plain():
    return "plain"


async def coroutine():
    return "async"


def generator():
    yield "gen"


class Holder:
    def method(self):
        return "method"

    async def async_method(self):
        return "async method"

    def __call__(self):
        return "callable"


CALLABLES = [plain, coroutine, generator, lambda: "lambda", Holder().method,
             Holder().async_method, Holder(), functools.partial(plain),
             functools.partial(coroutine), functools.wraps(plain)(lambda: "wrapped"), len]


@pytest.mark.parametrize("func", CALLABLES, ids=lambda f: getattr(f, "__name__", type(f).__name__))
def test_ensure_sync_gives_what_flask_gives(func):
    ours, theirs = App(__name__), Flask(__name__)
    try:
        expected = theirs.ensure_sync(func)
    except RuntimeError as exc:  # an async function without Flask's async extra installed
        with pytest.raises(RuntimeError, match=str(exc)[:40]):
            ours.ensure_sync(func)
        return
    found = ours.ensure_sync(func)
    if expected is func:
        assert found is func
    else:  # wrapped to run in an event loop: the same result as Flask's wrapper
        assert found is not func and found() == expected()


def test_the_app_runs_on_it(app):
    assert isinstance(app, App)
    assert app.test_client().get("/api/v1/healthz").status_code == 200
