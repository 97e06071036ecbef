"""Rights in the pages. Portal admins (`profile.ADMIN`) hold every right; other users
hold what the admin allowed in the access settings (pages.permissions).

Checked on the server for every request, so a crafted POST without the right gets
403 even though its form was never shown.
"""
from __future__ import annotations

import functools

from flask import g

from pages import permissions
from pages.frame import PageError

MANAGE = "manage"  # rules, notification settings, access, health: admins only
VIEW_CARDS = permissions.VIEW_CARDS  # search clients, see a card and its history
ADJUST = permissions.ADJUST  # card actions: issue, block/unblock, adjust, reverse
RIGHTS = (MANAGE, VIEW_CARDS, ADJUST)


def can(right: str) -> bool:
    """Does the current viewer (g.viewer of g.portal) hold the right?"""
    if right not in RIGHTS:
        raise ValueError(f"unknown right {right!r}")
    if g.viewer.is_admin:
        return True
    if right == MANAGE:
        return False
    access = _access()
    # Adjusting a balance needs the card in view: the right to act includes the right to see.
    return bool(access[right] or (right == VIEW_CARDS and access[ADJUST]))


def _access() -> dict:
    """Read once per request: a page asks `can` for every menu item and form."""
    if "page_access" not in g:
        g.page_access = permissions.load(g.portal)["access"]
    return g.page_access


def require(right: str):
    """Decorator (under `viewer_required`): 403 unless the viewer holds the right."""
    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if not can(right):
                raise PageError(403, "Недостаточно прав: обратитесь к администратору портала.")
            return view(*args, **kwargs)
        return wrapped
    return decorate


def landing() -> str | None:
    """The first page a viewer should see, or None when they may see nothing."""
    if can(MANAGE):
        return "pages_rules.show"
    if can(VIEW_CARDS):
        return "pages_clients.search"
    return None
