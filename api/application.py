"""The Flask application class: Flask, with its per-call check for async functions cut short.

Flask asks `inspect.iscoroutinefunction` of every view, hook and teardown it calls, on
every request (thirteen times an accrual, ~350 ns each: it unwraps methods and partials
first). A plain `def` function needs one look at its code's flags, which is what the
inspect answer comes to for one; anything else (a method, a partial, an async function,
a callable object) is asked of Flask as before.
"""
from __future__ import annotations

from inspect import CO_COROUTINE
from types import FunctionType

from flask import Flask


class App(Flask):
    def ensure_sync(self, func):
        if type(func) is FunctionType and not func.__code__.co_flags & CO_COROUTINE:
            return func
        return super().ensure_sync(func)
