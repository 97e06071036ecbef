"""`flask --app api serve`: migrate, then serve on HOST:PORT and say where."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.serving import run_simple

from api.db import connection
from api.logs import safe_url as _safe_url


@click.command("serve", help="Migrate the database and start the HTTP service.")
@click.option("--host", default=None, help="Default: LOYALTY_HOST or 127.0.0.1.")
@click.option("--port", default=None, type=int, help="Default: LOYALTY_PORT or 8000.")
@with_appcontext
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


def init_app(app) -> None:
    from api.doctor import doctor_command

    # ProxyFix for LOYALTY_PROXY_HOPS is applied once, by activities.public_url.init_app.
    app.cli.add_command(serve_command)
    app.cli.add_command(doctor_command)
