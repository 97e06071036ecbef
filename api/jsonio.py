"""JSON in and out of the REST API: readable UTF-8 out, hostile-proof parsing in.

In: number literals are bounded before int()/float() see them (money.bounded_number),
NaN and Infinity are not JSON, and no string of the document, keys included, may hold a
control character (api.ledger.text): refused with 422 naming the field, on both databases.
Out: UTF-8 as is (Cyrillic readable, not \\u-escaped).
"""
from __future__ import annotations

import json

from flask import request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Blueprint
from marshmallow import Schema
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from api.errors import ApiError
from api.ledger.money import bounded_number
from api.ledger.text import CONTROL_MESSAGE, find_bad_text


def _not_json(literal: str):
    raise json.JSONDecodeError(f"{literal} is not JSON", literal, 0)


def loads(data: bytes | str):
    """Decode a request body; JSONDecodeError when it is not JSON, ApiError(422) when a
    string in it holds a control character."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError("not UTF-8", str(exc.object[:20]), exc.start) from None
    document = json.loads(data, parse_int=bounded_number(int), parse_float=bounded_number(float),
                          parse_constant=_not_json)
    bad = find_bad_text(document)
    if bad:
        field, character = bad
        raise ApiError(422, "validation_error", f"{field}: {CONTROL_MESSAGE} Found {character}.",
                       {field: f"{CONTROL_MESSAGE} Found {character}."})
    return document


class StrictParser(FlaskParser):
    """flask-smorest's argument parser, reading JSON bodies with `loads`.

    webargs builds a new schema object from the class on every request (a tenth of an
    accrual's Python time: each field is deep-copied); a schema object keeps no state
    between loads, so one per class is kept and reused."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._schemas: dict[type, Schema] = {}

    def _get_schema(self, argmap, req) -> Schema:
        if isinstance(argmap, type) and issubclass(argmap, Schema):
            found = self._schemas.get(argmap)
            if found is None:
                found = self._schemas[argmap] = argmap()
            return found
        return super()._get_schema(argmap, req)

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        return loads(req.get_data(cache=True))


class ApiBlueprint(Blueprint):
    ARGUMENTS_PARSER = StrictParser()


def json_object() -> dict:
    """The request body as a JSON object (for PUTs that validate a document themselves)."""
    try:
        body = loads(request.get_data(cache=True))
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


class JSONProvider(DefaultJSONProvider):
    """Flask's provider, with its encoders built once: json.dumps with any option builds a
    JSONEncoder on every call, one per response. The same options make the same encoder
    (the provider's settings are read at each call, so changing them still takes)."""

    OPTIONS = frozenset(("separators", "indent"))  # what Flask's response() passes

    def __init__(self, app):
        super().__init__(app)
        self._encoders: dict[tuple, json.JSONEncoder] = {}

    def dumps(self, obj, **kwargs) -> str:
        if not kwargs.keys() <= self.OPTIONS:
            return super().dumps(obj, **kwargs)
        options = (self.default, self.ensure_ascii, self.sort_keys,
                   kwargs.get("separators"), kwargs.get("indent"))
        encoder = self._encoders.get(options)
        if encoder is None:
            default, ensure_ascii, sort_keys, separators, indent = options
            encoder = self._encoders[options] = json.JSONEncoder(
                default=default, ensure_ascii=ensure_ascii, sort_keys=sort_keys,
                separators=separators, indent=indent)
        return encoder.encode(obj)


def init_app(app) -> None:
    app.json = JSONProvider(app)
    app.json.ensure_ascii = False
