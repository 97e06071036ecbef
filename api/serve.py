"""`flask --app api serve`: migrate, then serve on HOST:PORT and say where."""
from __future__ import annotations

import click
from flask import current_app
from werkzeug.serving import run_simple

from api.db import connection


@click.command("serve", help="Migrate the database and start the HTTP service.")
@click.option("--host", default=None, help="Default: LOYALTY_HOST or 127.0.0.1.")
@click.option("--port", default=None, type=int, help="Default: LOYALTY_PORT or 8000.")
def serve_command(host: str | None, port: int | None):
    from api.migrations import migrate

    app = current_app._get_current_object()
    host = host or app.config["HOST"]
    port = port or int(app.config["PORT"])
    with connection():
        applied = migrate()
    click.echo(f"Database {_safe_url(app.config['DATABASE_URL'])}: "
               + (f"applied {', '.join(applied)}." if applied else "up to date."))
    click.echo(f"Loyalty service on http://{host}:{port}/  (API docs: http://{host}:{port}/api/v1/docs)")
    worker = app.extensions["worker"]
    worker.start()
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        worker.stop()


def _safe_url(url: str) -> str:
    """The database URL without its password, fit for a log line."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def init_app(app) -> None:
    app.cli.add_command(serve_command)
