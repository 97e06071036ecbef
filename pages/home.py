"""The app's main page, `POST /b24/app`: Bitrix24 opens it in the frame (the handler URL
of the app's settings). It proves the frame, signs a viewer token and sends the viewer
on to the first page their role may see."""
from __future__ import annotations

from flask import g, request

from api.models import Portal
from pages import roles, web
from pages.frame import PageError, issue, verify_frame

bp = web.blueprint("pages", __name__, url_prefix="/b24/app", static_folder="static",
                   template_folder="templates")


@bp.route("", methods=["POST"])
def entry():
    viewer = verify_frame(request.form, request.args)
    g.viewer, g.token = viewer, issue(viewer)
    g.portal = Portal.get(Portal.member_id == viewer.member_id)
    target = roles.landing()
    if target is None:
        return web.render("no_access.html")
    return web.redirect_to(target)


@bp.route("", methods=["GET"])
def opened_directly():
    """A bookmark or a typed URL: only Bitrix24's POST proves who is looking."""
    raise PageError(401, "Откройте приложение из Битрикс24.")
