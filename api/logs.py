"""One logging setup for the web service, the scheduler, the CLI and gunicorn.

Every line carries a timestamp (UTC, ISO 8601), the level, the logger and the id of
the request or run it belongs to; `LOYALTY_LOG_FORMAT=json` writes JSON lines instead.
Secrets are masked by a filter on the handler, so no logger (ours, requests', urllib3's,
gunicorn's) can write a token, a client_secret or an API key, in a message, its
arguments or a traceback.
"""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterable, Iterator

import click

LEVELS = ("INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(run_id)s] %(message)s"
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"  # the same header as WSGI hands it over
# A client's request id is echoed into every line: only a short, plain one is taken.
REQUEST_ID_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
SECRET_LITERAL_MIN = 6  # shorter configured "secrets" would mask ordinary words

_run_id: ContextVar[str] = ContextVar("loyalty_run_id", default="-")

# `Bearer <token>` in headers and reprs of them.
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+")
# key=value, key: value, 'key': 'value', "key":"value" and auth[access_token]=… (also
# %5B…%5D encoded) where the key names a secret; `auth=` is Bitrix24's REST token parameter.
_SECRET_KEY = (r"[\w\[\]%.-]*?(?:access_token|refresh_token|application_token|client_secret|"
               r"secret_key|api[_-]?key|apikey|password|passwd|secret|token|\bauth)"
               r"(?:%5D|\])?")
_PAIR = re.compile(r"(?i)(" + _SECRET_KEY + r"['\"]?\s*(?:=|:)\s*['\"]?)([^\s&'\",;}\]]+)")
# Our own API keys (api.auth.KEY_PREFIX) wherever they appear.
_API_KEY = re.compile(r"\blk_[A-Za-z0-9_-]{8,}")
# Webhook signing secrets (api.webhooks.signing.SECRET_PREFIX), in case one reaches a line.
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}")


def mask(text: str, literals: Iterable[str] = ()) -> str:
    """`text` with every secret-looking value replaced by ***."""
    for literal in literals:
        text = text.replace(literal, MASK)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    text = _PAIR.sub(lambda m: m.group(1) + MASK, text)
    text = _WEBHOOK_SECRET.sub("whsec_" + MASK, text)
    return _API_KEY.sub("lk_" + MASK, text)


def safe_url(url: str) -> str:
    """A database URL without its password, fit for a log line or an error message."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


class SecretFilter(logging.Filter):
    """Rewrites each record with its message (and traceback) masked; never drops one."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        super().__init__()
        self.literals = sorted({s for s in literals if s and len(s) >= SECRET_LITERAL_MIN},
                               key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask(record.getMessage(), self.literals), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text, self.literals)
        if record.stack_info:
            record.stack_info = mask(record.stack_info, self.literals)
        record.run_id = getattr(record, "run_id", None) or _run_id.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, run_id, message (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": _timestamp(record), "level": record.levelname, "logger": record.name,
                "run_id": getattr(record, "run_id", "-"), "message": record.getMessage()}
        if record.exc_info or record.exc_text:
            line["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LoyaltyHandler(logging.StreamHandler):
    """The one handler on the root logger: marked so a second setup replaces, not adds.
    Without a stream of its own it writes to whatever sys.stderr is at the time."""

    def __init__(self, stream=None) -> None:
        super().__init__(stream)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure(level: str = "INFO", fmt: str = "text", literals: Iterable[str] = (),
              stream=None) -> logging.Handler:
    """Install the handler on the root logger (again: replace it); returns the handler."""
    level = _checked(level, LEVELS, "LOYALTY_LOG_LEVEL")
    fmt = _checked(fmt, FORMATS, "LOYALTY_LOG_FORMAT")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LoyaltyHandler)]:
        root.removeHandler(old)
    handler = LoyaltyHandler(stream)
    handler.addFilter(SecretFilter(literals))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # peewee logs every statement with its parameters at DEBUG, and those parameters
    # carry OAuth tokens and provider keys: the filter masks the known shapes, but a
    # token in a bare SQL parameter has no key next to it, so peewee stays at INFO.
    logging.getLogger("peewee").setLevel(logging.INFO)
    # APScheduler says "Running job" and "executed successfully" for the 3-second tick:
    # 57,600 lines a day that tell nothing; its warnings (missed runs) still come through.
    logging.getLogger("apscheduler").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return handler


class BadSetting(click.ClickException):
    """A logging setting that is not one of its choices (a command shows it in one line)."""


def _checked(value: str | None, allowed: tuple[str, ...], name: str) -> str:
    """A setting from `allowed` (the first is the default; case aside). A wrong one is an
    error, not a silent default: an operator who asked for DEBUG should not get INFO."""
    chosen = str(value or allowed[0]).strip()
    for option in allowed:
        if chosen.lower() == option.lower():
            return option
    raise BadSetting(f"{name}={chosen!r}: use one of {', '.join(allowed)}.")


def app_secrets(config) -> list[str]:
    """The configured secrets, masked as literals wherever they appear."""
    return [str(config[name]) for name in ("SECRET_KEY", "B24_CLIENT_SECRET")
            if config.get(name)]


def configure_from(config) -> logging.Handler:
    return configure(config.get("LOG_LEVEL"), config.get("LOG_FORMAT"), app_secrets(config))


def configure_from_env(environ=None) -> logging.Handler:
    """For processes that log before any app exists (gunicorn's master)."""
    environ = os.environ if environ is None else environ
    literals = [environ.get(name, "") for name in ("LOYALTY_SECRET_KEY", "B24_CLIENT_SECRET")]
    return configure(environ.get("LOYALTY_LOG_LEVEL"), environ.get("LOYALTY_LOG_FORMAT"), literals)


@contextmanager
def run_id(prefix: str, value: str | None = None) -> Iterator[str]:
    """Tag every line logged inside the block with one id (a scheduler run, a command)."""
    value = value or f"{prefix}-{secrets.token_hex(4)}"
    token = _run_id.set(value)
    try:
        yield value
    finally:
        _run_id.reset(token)


def current_run_id() -> str:
    return _run_id.get()


def init_app(app) -> None:
    """Called by the factory: the handler, and a request id for every request."""
    from flask import request

    if not app.config.get("TESTING") or app.config.get("LOG_LEVEL"):
        configure_from(app.config)

    @app.before_request
    def _tag_request():
        environ = request.environ  # the proxy looked through once
        given = environ.get(REQUEST_ID_ENVIRON, "")
        environ["loyalty.run_id_token"] = _run_id.set(
            given if REQUEST_ID_SAFE.match(given) else f"req-{secrets.token_hex(6)}")

    @app.after_request
    def _echo_request_id(response):
        response.headers[REQUEST_ID_HEADER] = _run_id.get()
        return response

    @app.teardown_request
    def _untag(exc):
        token = request.environ.pop("loyalty.run_id_token", None)
        if token is not None:
            _run_id.reset(token)
