"""Every failure leaves as one JSON shape: {"error": {"code", "message", "fields"}}.

Domain errors from the ledger are mapped to HTTP statuses here and nowhere else. The
API speaks English (api.messages translates the ledger's Russian); codes never change.
"""
from __future__ import annotations

import logging

from flask import jsonify
from peewee import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from api.documents import flatten_messages
from api.ledger import errors as ledger
from api.messages import english, english_fields

log = logging.getLogger(__name__)

STATUS = [
    (ledger.InvalidInput, 422),
    (ledger.MissingFields, 422),
    (ledger.RuleViolation, 422),
    (ledger.NotFound, 404),
    (ledger.Conflict, 409),
]


class ApiError(Exception):
    """A failure of the HTTP layer itself (auth, headers, bad JSON)."""

    def __init__(self, status: int, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or {}


def error_response(status: int, code: str, message: str, fields=None, details=None):
    body = {"code": code, "message": english(message),
            "fields": english_fields(fields or {})}
    if details:
        body["details"] = details
    return jsonify({"error": body}), status


def _ledger_error(exc: ledger.LedgerError):
    status = next((s for cls, s in STATUS if isinstance(exc, cls)), 400)
    message = exc.message
    if isinstance(exc, ledger.InvalidInput):
        message = "; ".join(f"{k}: {v}" for k, v in english_fields(exc.fields).items())
    return error_response(status, exc.code, message, exc.fields, exc.details)


def _api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message, exc.fields)


def _http_error(exc: HTTPException):
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if exc.code == 422 and messages:
        fields = english_fields(flatten_messages(
            {k: v for loc in messages.values() for k, v in _as_dict(loc).items()}))
        summary = "; ".join(f"{k}: {v}" for k, v in fields.items())
        return error_response(422, "validation_error", summary or "Check the request's fields.",
                              fields)
    if exc.code == 400 and messages:
        return error_response(400, "invalid_json", "The body is not valid JSON.")
    code = (exc.name or "error").lower().replace(" ", "_")
    return error_response(exc.code or 500, code, exc.description or exc.name)


def _as_dict(messages) -> dict:
    return messages if isinstance(messages, dict) else {"_schema": messages}




def _database_down(exc: Exception):
    # A database that does not answer is an outage to wait out, not a bug: 503, and the
    # driver's text (hosts, users) stays in the log.
    # SQLite also says OperationalError for a missing table or column: a bug, so a 500.
    if isinstance(exc, OperationalError) and "no such" in str(exc).lower():
        return _unexpected(exc)
    log.error("database unavailable: %s", str(exc).strip().splitlines()[0][:200] if str(exc) else
              type(exc).__name__)
    return error_response(503, "database_unavailable",
                          "The database is not answering; try again shortly.")


def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "Internal error; the request was not carried out.")


def init_app(app) -> None:
    app.register_error_handler(ledger.LedgerError, _ledger_error)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(InterfaceError, _database_down)
    app.register_error_handler(Exception, _unexpected)
