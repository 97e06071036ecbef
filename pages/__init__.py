"""The app's own pages inside Bitrix24: program rules, notifications, clients, health,
webhooks.

Reusable parts for other frame pages (CRM tabs): `pages.frame` (verify the frame POST,
the signed viewer token, CSRF, `viewer_required`), `pages.roles` (rights, `require`),
`pages.web` (a page blueprint with shared helpers and headers, the confirmation step),
the base template `pages/base.html` and `pages/static/app.css`, `app.js`.
"""


def init_app(app) -> None:
    """Registers the pages' blueprints and the HTML error page of PageError."""
    from pages import (clients, data, health, home, newcard, notices, numbers, rules, tabs, web,
                       webhooks)
    from pages.frame import PageError

    for module in (home, rules, notices, clients, newcard, health, tabs, numbers, data, webhooks):
        app.register_blueprint(module.bp)
    app.register_error_handler(PageError, web.error_page)
    app.wsgi_app = web.NavAsGet(app.wsgi_app)
