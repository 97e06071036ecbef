"""Liveness for load balancers and operators: does the database answer?"""
from __future__ import annotations

from api import schemas
from api.db import db
from api.jsonio import ApiBlueprint
from api.views import fails

bp = ApiBlueprint("health", __name__, description="Health")


@bp.route("/healthz", methods=["GET"])
@bp.route("/api/v1/healthz", methods=["GET"])
@bp.doc(security=[])
@bp.response(200, schemas.Health)
@fails("database_unavailable", public=True)
def healthz():
    """Is the service up and its database answering? (no key needed)

    503 `database_unavailable` when the database does not answer.
    """
    db.execute_sql("SELECT 1").fetchone()  # an outage raises: api.errors answers 503
    return {"status": "ok", "database": "ok"}
