"""The public https base URL of the handlers we register with Bitrix24.

Behind a reverse proxy `request.url_root` is the inner address (http://10.0.0.5:8000/), and a
handler registered there is unreachable for the portal. So the base is LOYALTY_PUBLIC_URL
when set; else, only when LOYALTY_PROXY_HOPS says how many proxies stand in front of us,
the address the proxy forwarded (X-Forwarded-Proto/Host/Port/Prefix, trusted for exactly
that many hops by Werkzeug's ProxyFix, so a client cannot forge it past the proxy); else
nothing is registered and the message says which setting is missing.
"""
from __future__ import annotations

from flask import Flask, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from activities.b24client import B24PermanentError
from activities.portals import B24Settings

HOPS_MAX = 5  # more proxies than that in front of one app is a typo


class PublicUrlMissing(B24PermanentError):
    """A B24Error so that the install page, the Health page's repair and `b24 register`
    show it where they show a portal's refusal: nothing is registered either way."""

    def __init__(self, description: str) -> None:
        super().__init__("PUBLIC_URL_MISSING", description)


def proxy_hops(config) -> int:
    value = str(config.get("PROXY_HOPS") or "0").strip()
    if not value.isdigit() or int(value) > HOPS_MAX:
        raise ValueError(f"LOYALTY_PROXY_HOPS must be the number of proxies (0 to {HOPS_MAX}), "
                         f"got {value!r}")
    return int(value)


def init_app(app: Flask) -> None:
    hops = proxy_hops(app.config)
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops,
                                x_port=hops, x_prefix=hops)


def for_request(found: B24Settings) -> B24Settings:
    """`found` with the public base filled in, or PublicUrlMissing."""
    if found.public_url:
        return found
    root = request.url_root.rstrip("/")
    if not proxy_hops(current_app.config):
        raise PublicUrlMissing(
            f"Не задан LOYALTY_PUBLIC_URL: обработчики не зарегистрированы. Этот запрос пришёл "
            f"на {root}, а за обратным прокси это внутренний адрес. Задайте LOYALTY_PUBLIC_URL="
            f"https://<публичный адрес> или LOYALTY_PROXY_HOPS=<число прокси>.")
    if not root.startswith("https://"):
        raise PublicUrlMissing(
            f"Прокси передал адрес {root}, а Битрикс24 нужен https. Задайте LOYALTY_PUBLIC_URL "
            f"или передавайте X-Forwarded-Proto: https.")
    return B24Settings(found.client_id, found.client_secret, found.oauth_url, root, found.config)
