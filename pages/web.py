"""What every page blueprint shares: template helpers, headers, navigation that carries
the viewer token in a POST body (never a URL), error pages, and the confirmation step.

Navigation: a link is a button in a small form that POSTs to its URL with `?_get=1`, the
token and the CSRF value in the body (no script needed); `NavAsGet` hands such a POST to
the GET view. After an action, `redirect_to` answers a
page that posts on to the next one the same way (post/redirect/get without a URL token).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, make_response, render_template, request, url_for
from markupsafe import Markup, escape

from notifications.templates import format_bonus
from pages import i18n, roles
from pages.frame import CSRF_FIELD, TOKEN_FIELD, PageError, csrf_for

TEXT_MAX_LEN = 1000


def blueprint(name: str, import_name: str, url_prefix: str, **kw) -> Blueprint:
    """A page blueprint with the shared template helpers and response headers."""
    bp = Blueprint(name, import_name, url_prefix=url_prefix, **kw)
    bp.context_processor(_helpers)
    bp.after_request(secure_headers)
    return bp


def _helpers() -> dict:
    return {"tr": i18n.tr, "url": page_url, "can": roles.can, "money": money,
            "hidden_auth": hidden_auth, "viewer": g.get("viewer"), "lang": i18n.lang(),
            "token": g.get("token"), "csrf": csrf_for(g.viewer) if g.get("viewer") else "",
            "message": i18n.tr(MESSAGES.get(request.args.get("m"), "")),
            "detail": request.args.get("detail", "")[:300]}


NAV_FLAG = "_get"


def page_url(endpoint: str, **values) -> str:
    """url_for: the viewer token never goes into a URL (access logs, Referer)."""
    return url_for(endpoint, **values)


class NavAsGet:
    """WSGI: a POST to a page with `?_get=1` is a navigation, served by the GET view.

    The body (token, CSRF, a form's fields) is still parsed: Werkzeug reads form data
    whenever a content type is sent, whatever the method.
    """

    PREFIXES = ("/b24/app", "/b24/placements")

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST" \
                and environ.get("PATH_INFO", "").startswith(self.PREFIXES) \
                and f"{NAV_FLAG}=1" in environ.get("QUERY_STRING", "").split("&"):
            environ["REQUEST_METHOD"] = "GET"
        return self.wsgi_app(environ, start_response)


def hidden_auth() -> Markup:
    """The two hidden fields every POST form needs: the viewer token and the CSRF token."""
    return Markup(f'<input type="hidden" name="{TOKEN_FIELD}" value="{escape(g.token)}">'
                  f'<input type="hidden" name="{CSRF_FIELD}" value="{csrf_for(g.viewer)}">')


def redirect_to(endpoint: str, message: str | None = None, **values):
    """Post/redirect/get without a token in the URL: a page that posts on to the next one
    (app.js submits it at once; a button without JS). `message` is a MESSAGES code."""
    if message:
        values["m"] = message
    # No menu on it (embedded): nothing to click while it is on its way.
    return render("continue.html", target=page_url(endpoint, **{NAV_FLAG: 1}, **values),
                  embedded=True)


def render(page: str, status: int = 200, /, **context):
    """A page from templates/pages/ (positional-only, so `template=` may be context)."""
    return render_template(f"pages/{page}", **context), status


def money(kop) -> str:
    return format_bonus(int(kop or 0))


# A settings form carries the version it was filled from (the API's If-Match): a save
# over a newer version writes nothing and says this, with the typed values kept.
STALE_FORM = ("Пока вы редактировали, эти настройки сохранил другой администратор. Ваши "
              "изменения не записаны; проверьте поля и сохраните снова, чтобы заменить ими "
              "его версию.")
VERSION_MAX_LEN = 64


def form_version() -> str | None:
    return form_text("version", VERSION_MAX_LEN) or None


def form_text(name: str, max_len: int = TEXT_MAX_LEN) -> str:
    """A trimmed form value, cut to a limit (the field's own check reports real problems)."""
    value = request.form.get(name, "")
    return value.strip()[:max_len] if isinstance(value, str) else ""


def confirm(title: str, lines: list[tuple[str, str]], action: str, fields: dict,
            back: str):
    """The confirmation step: the same POST again with `confirmed=1` (works without JS)."""
    back += ("&" if "?" in back else "?") + f"{NAV_FLAG}=1"  # "cancel" is a navigation
    return render("confirm.html", title=title, lines=lines, action=action,
                  fields={**fields, "confirmed": "1"}, back=back)


def confirmed() -> bool:
    return request.form.get("confirmed") == "1"


def portal_origin(portal) -> str | None:
    """https://host of the portal as stored at install; never a DOMAIN from a request."""
    parts = urlsplit(portal.client_endpoint or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def secure_headers(response):
    """Framing allowed for the portal only (CSP, never X-Frame-Options); nothing cached."""
    portal = g.get("portal")
    origin = portal_origin(portal) if portal is not None else None
    # An error page shows nothing of any portal, so any parent may frame it; a real page
    # only the portal it belongs to (and ourselves).
    ancestors = f"'self' {origin}" if origin else ("'self'" if portal is not None else "*")
    response.headers["Content-Security-Policy"] = (
        f"frame-ancestors {ancestors}; base-uri 'none'; object-src 'none'; form-action 'self'")
    response.headers.pop("X-Frame-Options", None)
    if request.endpoint != "pages.static":  # pages carry tokens; the CSS and JS may be cached
        response.headers["Cache-Control"] = "no-store"
    # Links carry the viewer token: never send it to another site (the BX24 script host).
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def error_page(exc: PageError):
    # `failure`, not `message`: base.html shows `message` as a green notice.
    response = render_template("pages/error.html", failure=i18n.tr(exc.message),
                               status=exc.status, tr=i18n.tr, lang=i18n.lang())
    return secure_headers(make_response(response, exc.status))


MESSAGES = {
    "saved": "Сохранено. Изменения действуют со следующей операции.",
    "access_saved": "Права доступа сохранены.",
    "settings_saved": "Настройки уведомлений сохранены.",
    "template_saved": "Шаблон сохранён.",
    "test_queued": "Тестовое сообщение поставлено в очередь: его судьба видна в журнале.",
    "adjusted": "Корректировка проведена.",
    "debited": "Бонусы по сделке списаны.",
    "replayed": "Эта операция уже была проведена: повтор ничего не изменил.",
    "reversed": "Начисление по сделке отменено.",
    "blocked": "Карта заблокирована.",
    "unblocked": "Карта разблокирована.",
    "created": "Карта выпущена.",
    "existed": "Карта уже была у этого контакта.",
    "repaired": "Регистрации восстановлены.",
    "repair_failed": "Восстановление не удалось.",
    "retried": "Доставка повторена.",
    "retry_failed": "Повторная доставка не удалась, причина — в таблице.",
    "resumed": "Работа с порталом возобновлена.",
    "imported": "Импорт выполнен.",
    "merged": "Карты объединены: бонусы и покупки перенесены на эту карту.",
    "forgotten": "Данные клиента удалены; история бонусов сохранена под псевдонимом.",
    "webhook_saved": "События подписки сохранены.",
    "webhook_paused": "Подписка приостановлена: события ждут, ни одно не потеряно.",
    "webhook_resumed": "Подписка возобновлена: ожидавшие события уходят сейчас.",
    "webhook_deleted": "Подписка удалена вместе с журналом.",
    "webhook_replayed": "Событие поставлено в очередь на повторную отправку.",
}


def b24_settings():
    """The app's Bitrix24 settings; handler URLs where Bitrix24 reached us if no PUBLIC_URL."""
    from activities.portals import B24Settings

    from activities import public_url

    return public_url.for_request(B24Settings.from_config(current_app.config))


def b24_client():
    """The portal's REST client with the app's stored tokens (as the worker uses them)."""
    from activities.portals import client_for

    return client_for(g.portal, b24_settings(), current_app.extensions.get("b24_session"))


def not_found(what: str) -> PageError:
    return PageError(404, what)


def bad_request(message: str) -> PageError:
    return PageError(400, message)
