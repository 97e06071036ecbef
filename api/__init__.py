"""Application factory: the one place that knows every part of the service."""
from __future__ import annotations

import logging
import os

from flask import Flask

from api.application import App

DEFAULTS = {
    "HOST": "127.0.0.1",
    "PORT": 8000,
    "TIMEZONE": "Europe/Moscow",
    "PUBLIC_URL": None,
    "DAILY_AT": "09:00",
    "SYNC_AT": "02:30",
    "API_TITLE": "Bitrix24 Loyalty API",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    "OPENAPI_SWAGGER_UI_URL": "/api/v1/docs/static/",
    "JSON_SORT_KEYS": False,
}
# Read without the LOYALTY_ prefix because Bitrix24 and UniSender name them so.
FOREIGN_ENV = ("B24_CLIENT_ID", "B24_CLIENT_SECRET", "B24_OAUTH_URL",
               "UNISENDER_GO_URL", "UNISENDER_API_URL")


def create_app(test_config: dict | None = None) -> Flask:
    # peewee logs every statement with its parameters at DEBUG, and those parameters
    # carry OAuth tokens and provider keys: never let that reach a log.
    logging.getLogger("peewee").setLevel(logging.INFO)
    app = App(__name__, instance_relative_config=True)
    app.config.update(DEFAULTS)
    app.config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "loyalty.sqlite3")
    if test_config is None:
        app.config.from_prefixed_env("LOYALTY")
        app.config.update({k: os.environ[k] for k in FOREIGN_ENV if k in os.environ})
    else:
        app.config.update(test_config)
    from api import commands, logs

    logs.init_app(app)  # first, so that everything after it logs through it
    commands.init_app(app)

    from api import auth, db, errors, limits, serve, sessions

    limits.ensure_secret_key(app)
    limits.init_app(app)  # body size and JSON nesting limits
    sessions.init_app(app)  # none for the REST API
    db.init_app(app)
    auth.init_app(app)
    serve.init_app(app)
    _register_api(app)
    _register_bitrix24(app)
    _register_pages(app)
    _register_data(app)
    errors.init_app(app)  # after flask-smorest, whose own HTTP error handler it replaces
    return app


def _register_bitrix24(app: Flask) -> None:
    from activities import cli, public_url, views
    from scheduler import worker

    public_url.init_app(app)  # ProxyFix when LOYALTY_PROXY_HOPS names the proxies in front
    app.register_blueprint(views.bp)
    cli.init_app(app)
    worker.init_app(app)


def _register_data(app: Flask) -> None:
    from api.data import cli as data_cli

    data_cli.init_app(app)  # import/export/forget commands and the audit trail's hook


def _register_pages(app: Flask) -> None:
    import pages

    pages.init_app(app)


def _register_api(app: Flask) -> None:
    from api import jsonio, views

    jsonio.init_app(app)
    views.register(app)
