"""Swagger UI's files from the installed swagger-ui-bundle: the docs page needs no CDN."""
from __future__ import annotations

from flask import Blueprint, send_from_directory
from swagger_ui_bundle import swagger_ui_path

bp = Blueprint("docs_static", __name__)


@bp.route("/api/v1/docs/static/<path:filename>")
def static(filename):
    return send_from_directory(swagger_ui_path, filename)
