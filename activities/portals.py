"""Portals as Bitrix24 sees them: stored tokens, and a REST client per portal."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from activities.b24client import B24Client, InMemoryTokenStore, PortalAuth
from activities.proof import PROOF_TIMEOUT_S, token_url
from api.clock import utcnow
from api.db import connection, db, lock_rows
from api.models import Portal


@dataclass(frozen=True)
class B24Settings:
    client_id: str
    client_secret: str
    oauth_url: str  # an override of every portal's OAuth server (tests, proxies); "" for none
    public_url: str
    config: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config) -> "B24Settings":
        return cls(client_id=config.get("B24_CLIENT_ID") or "",
                   client_secret=config.get("B24_CLIENT_SECRET") or "",
                   oauth_url=config.get("B24_OAUTH_URL") or "",
                   public_url=(config.get("PUBLIC_URL") or "").rstrip("/"),
                   config={k: config.get(k) for k in ("UNISENDER_GO_URL", "UNISENDER_API_URL")})

    def handler_url(self, path: str) -> str:
        return f"{self.public_url}{path}"


class PortalTokenStore:
    """TokenStore over the Portal table.

    One refresh at a time per portal across every process: the lock is the database's
    (the portal row `FOR UPDATE` on PostgreSQL, the write lock of `BEGIN IMMEDIATE` on
    SQLite), held around read-refresh-store, so the loser re-reads the winner's pair
    instead of spending a refresh token that is already dead.
    """

    @contextmanager
    def lock(self, member_id: str) -> Iterator[None]:
        with connection(), db.atomic():
            lock_rows(Portal.select(Portal.id).where(Portal.member_id == member_id)).execute()
            yield

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
    """The portal's client with the app's stored tokens (background work, repairs)."""
    return B24Client(auth_of(portal), PortalTokenStore(), client_id=settings.client_id,
                     client_secret=settings.client_secret,
                     oauth_url=token_url(portal.server_endpoint, settings.oauth_url),
                     session=session)


def viewer_client(portal: Portal, access_token: str, session=None) -> B24Client:
    """A client acting with a viewer's own token, at the endpoint stored for the portal:
    the viewer's CRM rights apply. No refresh (we hold no refresh token of theirs)."""
    auth = PortalAuth(portal.member_id, portal.client_endpoint or "", access_token, "")
    return B24Client(auth, InMemoryTokenStore(auth), client_id="", client_secret="",
                     session=session, timeout_s=PROOF_TIMEOUT_S)


def adopt_tokens(portal: Portal, user_id: int | None, access_token: str | None,
                 refresh_token: str | None, expires_at: int) -> bool:
    """Fresh tokens of the installing admin that came with a proven call replace the
    stored pair when they live longer, so a dead refresh token heals without a reinstall.
    One conditional UPDATE: a concurrent refresh that stored a newer pair wins."""
    if not (user_id and access_token and refresh_token) or user_id != portal.installed_by_user_id:
        return False
    changed = Portal.update(access_token=access_token, refresh_token=refresh_token,
                            token_expires_at=expires_at, updated_at=utcnow()).where(
        (Portal.id == portal.id) & (Portal.status == "active")
        & (Portal.installed_by_user_id == user_id)
        & (Portal.token_expires_at.is_null() | (Portal.token_expires_at < expires_at))).execute()
    return bool(changed)
