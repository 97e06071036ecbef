"""Fewer round trips to PostgreSQL inside a transaction, same statements, same order.

Over a socket every statement waits for its answer: under load each wait is two context
switches and a scheduler delay, with the card's row lock held. Two kinds of statement
need no answer of their own before the next one:

- BEGIN: sent with the transaction's first statement, in the same message.
- A write whose result nobody reads (`execute_later`: the operation's stored answer,
  the audit line, a client notice): sent with the next statement, or with COMMIT.

Statements still run one after another in the order they were issued, in the same
transaction; a failure in a deferred one fails the statement or the COMMIT it went out
with, and the transaction rolls back as before. An empty transaction sends nothing.
Each statement is logged (and so counted by count_queries) when it is issued.
"""
from __future__ import annotations

import threading

from peewee import __exception_wrapper__

from api import literals


class Pipelined:
    """For a peewee PostgresqlDatabase (psycopg2): mix in before it."""

    def __init__(self, *args, **kwargs):
        self._pipe = threading.local()  # .sql: bytes waiting, None outside a transaction
        super().__init__(*args, **kwargs)

    def _waiting(self) -> list[bytes] | None:
        return getattr(self._pipe, "sql", None)

    def begin(self, isolation_level=None):
        if isolation_level is not None:
            return super().begin(isolation_level)
        if self.is_closed():  # connect now: connecting later would reset the transactions
            self.connect()
        self._pipe.sql, self._pipe.sent = [b"BEGIN"], False
        return None

    def _execute_cursor(self, sql, params, **cursor_options):
        waiting = self._waiting()
        if not waiting and not sql.startswith(literals.PREPARED):
            return super()._execute_cursor(sql, params, **cursor_options)
        self._log_query(sql, params)
        with __exception_wrapper__:
            cursor = self.cursor(**cursor_options)
            text = self._written(sql, params)
            if waiting:
                text = b"; ".join(waiting + [text])
                self._pipe.sql, self._pipe.sent = [], True
            cursor.execute(text)
        return cursor

    def _written(self, sql, params) -> bytes:
        """The statement with its values written in: by api.literals where it can, else by
        psycopg2 (the same text either way; a cursor is made only for psycopg2's)."""
        text = literals.render(sql, params, self.connection())
        return text if text is not None else self.cursor().mogrify(sql, params or ())

    def execute_later(self, sql: str, params=()) -> None:
        """Run a statement whose result is not needed: in a transaction, with the next."""
        waiting = self._waiting()
        if waiting is None:
            self.execute_sql(sql, params)
            return
        self._log_query(sql, params)
        with __exception_wrapper__:
            waiting.append(self._written(sql, params))

    def commit(self):
        waiting, sent = self._waiting(), getattr(self._pipe, "sent", True)
        self._pipe.sql = None
        if waiting is None or (waiting == [b"BEGIN"] and not sent):
            return None if waiting is not None else super().commit()  # nothing was sent
        with __exception_wrapper__:
            self.cursor().execute(b"; ".join(waiting + [b"COMMIT"]))
        return None

    def rollback(self):
        waiting, sent = self._waiting(), getattr(self._pipe, "sent", True)
        self._pipe.sql = None
        if waiting is not None and not sent:
            return None  # BEGIN never went out: there is nothing to roll back
        return super().rollback()
