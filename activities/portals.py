"""Portals as Bitrix24 sees them: stored tokens, and a REST client per portal."""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

from activities.b24client import B24Client, PortalAuth
from api.clock import utcnow
from api.db import connection
from api.models import Portal

DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"


@dataclass(frozen=True)
class B24Settings:
    client_id: str
    client_secret: str
    oauth_url: str
    public_url: str
    config: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config) -> "B24Settings":
        return cls(client_id=config.get("B24_CLIENT_ID") or "",
                   client_secret=config.get("B24_CLIENT_SECRET") or "",
                   oauth_url=config.get("B24_OAUTH_URL") or DEFAULT_OAUTH_URL,
                   public_url=(config.get("PUBLIC_URL") or "").rstrip("/"),
                   config={k: config.get(k) for k in ("UNISENDER_GO_URL", "UNISENDER_API_URL")})

    def handler_url(self, path: str) -> str:
        return f"{self.public_url}{path}"


class PortalTokenStore:
    """TokenStore over the Portal table. One refresh at a time per portal in this process;
    Bitrix24 calls are made by the worker process only, so that is one at a time overall."""

    _locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
    _guard = threading.Lock()

    def lock(self, member_id: str) -> threading.Lock:
        with self._guard:
            return self._locks[member_id]

    def load(self, member_id: str) -> PortalAuth:
        with connection():
            portal = Portal.get(Portal.member_id == member_id)
        return auth_of(portal)

    def save(self, member_id: str, access_token: str, refresh_token: str, expires_at: int,
             client_endpoint: str) -> None:
        with connection():
            Portal.update(access_token=access_token, refresh_token=refresh_token,
                          token_expires_at=expires_at, client_endpoint=client_endpoint,
                          updated_at=utcnow()).where(Portal.member_id == member_id).execute()


def auth_of(portal: Portal) -> PortalAuth:
    return PortalAuth(member_id=portal.member_id, client_endpoint=portal.client_endpoint or "",
                      access_token=portal.access_token or "",
                      refresh_token=portal.refresh_token or "",
                      expires_at=portal.token_expires_at or 0)


def client_for(portal: Portal, settings: B24Settings, session=None) -> B24Client:
    return B24Client(auth_of(portal), PortalTokenStore(), client_id=settings.client_id,
                     client_secret=settings.client_secret, oauth_url=settings.oauth_url,
                     session=session)
