"""The WSGI app bench/http.py serves with gunicorn: ours, plus a trivial 5-line Flask
endpoint at /trivial in the same processes (the web stack's ceiling on this machine).
Settings come from the environment, as in production (LOYALTY_DATABASE_URL, …)."""
from __future__ import annotations

import gc

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from api import create_app

trivial = Flask("trivial")


@trivial.route("/")
def hello():
    return {"ok": True}


app = DispatcherMiddleware(create_app(), {"/trivial": trivial})

gc.freeze()  # as deploy/gunicorn.conf.py's post_worker_init does once the app is loaded
