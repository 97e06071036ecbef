"""Liveness for load balancers and operators: does the database answer?"""
from __future__ import annotations

from flask_smorest import Blueprint
from peewee import PeeweeException

from api.db import db

bp = Blueprint("health", __name__, description="Health")


@bp.route("/healthz", methods=["GET"])
@bp.route("/api/v1/healthz", methods=["GET"])
@bp.doc(security=[])
def healthz():
    try:
        db.execute_sql("SELECT 1").fetchone()
    except PeeweeException as exc:
        return {"status": "error", "database": type(exc).__name__}, 503
    return {"status": "ok", "database": "ok"}
