"""Limits on what a request may make us do, and the key that signs the pages' tokens.

- Bodies: `MAX_CONTENT_LENGTH` (1 MiB by default; the largest real Bitrix24 form is a few
  KiB) makes Werkzeug answer 413 before reading more; api.errors gives it the usual
  JSON error body.
- JSON nesting: webargs and Flask parse with the stdlib `json`, which recurses and fails
  with RecursionError (a 500) on `[[[[...`; so a JSON body is scanned for its depth first
  (`too_deep`, milliseconds for 1 MiB), and one deeper than `JSON_DEPTH_MAX` is a 400.
- The secret key: without LOYALTY_SECRET_KEY every gunicorn worker would sign with its own
  random key and reject its siblings' tokens. One key is generated once into the instance
  folder (mode 0600, created exclusively, so concurrent workers agree on it) and read by
  every process of this instance; a key file others may read is refused.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import time
from itertools import accumulate

from flask import Flask, request

log = logging.getLogger(__name__)

BODY_MAX_BYTES = 1024 * 1024
JSON_DEPTH_MAX = 32
SECRET_KEY_FILE = "secret_key"
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # unrolled: no per-char alternation
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # opening +1, closing -1 as int8


def too_deep(raw: bytes, limit: int = JSON_DEPTH_MAX) -> bool:
    """Is this JSON text nested deeper than `limit`? Found without parsing it: strip the
    strings (they cannot nest), map each bracket to +1 or -1 (a signed byte) and take the
    highest running sum, all in C (`translate`, `accumulate`): 1 MiB costs milliseconds."""
    if raw.count(b"[") + raw.count(b"{") <= limit:  # what opens no more cannot nest deeper
        return False
    brackets = _STRING_RE.sub(b"", raw).translate(_SIGNS, _NOT_BRACKETS)
    return max(accumulate(memoryview(brackets).cast("b"), initial=0)) > limit


def check_json_depth():
    req = request._get_current_object()  # the proxy looked through once
    if not req.is_json:
        return None
    # Whatever its Content-Length: a chunked body has none. MAX_CONTENT_LENGTH still bounds
    # what get_data reads (a chunked body past it arrives cut short and is invalid JSON).
    if too_deep(req.get_data(cache=True)):
        from api.errors import ApiError

        raise ApiError(400, "json_too_deep",
                       f"JSON is nested deeper than {JSON_DEPTH_MAX} levels.")
    return None


def ensure_secret_key(app: Flask) -> None:
    """LOYALTY_SECRET_KEY, else one key kept in the instance folder for every process."""
    if app.config.get("SECRET_KEY"):
        return
    path = app.config.get("SECRET_KEY_FILE") or os.path.join(app.instance_path, SECRET_KEY_FILE)
    app.config["SECRET_KEY"] = _shared_key(path)
    app.config["SECRET_KEY_GENERATED"] = path  # `flask --app api doctor` reports it
    log.warning("LOYALTY_SECRET_KEY is not set: using the generated key in %s, shared by "
                "the processes of this instance only. Set it for several hosts.", path)


def _shared_key(path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return _read_key(path)


def _read_key(path: str) -> str:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RuntimeError(f"{path} is readable by others (mode {stat.filemode(mode)}): "
                           "chmod 600 it or set LOYALTY_SECRET_KEY.")
    for _ in range(50):  # another worker may be between creating and writing it
        with open(path, encoding="ascii") as found:
            key = found.read().strip()
        if len(key) >= 32:
            return key
        time.sleep(0.02)
    raise RuntimeError(f"{path} holds no usable key: delete it or set LOYALTY_SECRET_KEY.")


def init_app(app: Flask) -> None:
    if app.config.get("MAX_CONTENT_LENGTH") is None:  # Flask's own default is "no limit"
        app.config["MAX_CONTENT_LENGTH"] = BODY_MAX_BYTES
    app.before_request(check_json_depth)
