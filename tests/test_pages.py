"""The app's pages: frame verification, the viewer token, CSRF, roles, headers, secrets.

Also the helpers the other test_pages_* modules import: a fake portal that answers
`profile` per user token, and `Frame`, which opens the app the way Bitrix24 does.
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from urllib.parse import parse_qsl

import pytest
import responses
from b24fake import APP_TOKEN, ENDPOINT, MEMBER, FakePortal

from api.models import ALL_TABLES, Portal, ProgramRules
from pages import frame, permissions
from pages.permissions import PortalSettings

ADMIN, MANAGER, OUTSIDER = "admin-auth-token", "manager-auth-token", "outsider-auth-token"
USERS = {ADMIN: {"ID": "1", "NAME": "Ирина", "LAST_NAME": "Админова", "ADMIN": True},
         MANAGER: {"ID": "7", "NAME": "Пётр", "LAST_NAME": "Менеджеров", "ADMIN": False},
         OUTSIDER: {}}  # an inactive user: profile answers an empty result
FRAME_FORM = {"AUTH_EXPIRES": "3600", "REFRESH_ID": "user-refresh-secret",
              "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/", "APPLICATION_TOKEN": APP_TOKEN,
              "APPLICATION_SCOPE": "crm,bizproc,im,user_brief,placement", "member_id": MEMBER,
              "status": "L", "PLACEMENT": "DEFAULT", "PLACEMENT_OPTIONS": "{}"}
QUERY = {"DOMAIN": "example.bitrix24.com", "PROTOCOL": "1", "LANG": "ru", "APP_SID": "sid"}
SECRETS = ("access-1", "refresh-1", APP_TOKEN, ADMIN, MANAGER, "user-refresh-secret")


class PagesPortal(FakePortal):
    """The fake portal, plus `profile` answering for whichever user token called it."""

    def __init__(self, rsps):
        super().__init__(rsps)
        self.tokens |= set(USERS)
        self.auth_seen = None
        self.urls: list[str] = []
        self.denied: set[tuple[str, str, int]] = set()

    def _http(self, request):
        self.urls.append(request.url)
        self.auth_seen = json.loads(request.body or "{}").get("auth")
        return super()._http(request)

    def user_of(self, token) -> int:
        return int(USERS.get(token, {}).get("ID") or 0)

    def m_profile(self, p):
        return self.ok(USERS.get(self.auth_seen, {}))

    def deny(self, token, method, entity_id):
        """This user may not read that record (their CRM rights), as Bitrix24 refuses it."""
        self.denied.add((token, method, int(entity_id)))

    def _run(self, method, params):
        if (self.auth_seen, method, int(params.get("id") or 0)) in self.denied:
            return 400, {"error": "ACCESS_DENIED", "error_description": "Access denied."}
        return super()._run(method, params)


@contextmanager
def fake_portal():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield PagesPortal(rsps)


def empty_portal_settings():
    """Every test starts with no page settings (the defaults)."""
    PortalSettings.delete().execute()


@pytest.fixture(autouse=True)
def _portal_settings(app):
    empty_portal_settings()


@pytest.fixture
def b24p(app):
    with fake_portal() as fake:
        yield fake


def moved(response) -> str | None:
    """Where a continue page (post/redirect/get without a token in the URL) goes next."""
    found = re.search(r'<form method="post" action="([^"]+)" id="continue-form"',
                      response.get_data(as_text=True))
    return found[1].replace("&amp;", "&") if response.status_code == 200 and found else None


class Frame:
    """Opens the app as Bitrix24 does and then browses it with the viewer token, which
    goes in POST bodies only (navigation is a POST with ?_get=1, as app.js sends it)."""

    def __init__(self, client):
        self.client, self.token, self.csrf = client, None, None

    def open(self, auth=ADMIN, query=None, **form):
        return self.client.post("/b24/app", query_string={**QUERY, **(query or {})},
                                data={**FRAME_FORM, "AUTH_ID": auth, **form})

    def login(self, auth=ADMIN, **query):
        page = self.open(auth, query)
        found = dict(re.findall(r'name="loyalty-(token|csrf)" content="([^"]+)"',
                                page.get_data(as_text=True)))
        if found:
            self.token, self.csrf = found["token"], found["csrf"]
        if moved(page):  # on to the first page the role may see
            page = self.follow(page)
        assert page.status_code == 200, page.get_data(as_text=True)
        return page

    def auth(self, csrf=True) -> dict:
        return {"t": self.token, **({"csrf": self.csrf} if csrf else {})}

    def get(self, path, csrf=True, **params):
        base, _, query = path.partition("?")
        query = dict(parse_qsl(query), **params, _get="1")
        return self.client.post(base, query_string=query, data=self.auth(csrf))

    def follow(self, response):
        return self.client.post(moved(response), data=self.auth())

    def post(self, path, data=None, csrf=True):
        return self.client.post(path, data={**self.auth(csrf), **(data or {})})


@pytest.fixture
def frame_user(client, installed, b24p):
    return Frame(client)


@pytest.fixture
def admin(frame_user):
    """Signed in as the portal's administrator."""
    frame_user.login(ADMIN)
    return frame_user


def allow(portal, **access):
    permissions.save(portal, {"access": access}, actor="test")


def row_counts() -> dict:
    return {m.__name__: m.select().count() for m in [*ALL_TABLES, PortalSettings]}


def text(response) -> str:
    return response.get_data(as_text=True)


# --- entry and verification -------------------------------------------------------------------

def test_admin_opens_the_app_and_lands_on_the_rules(frame_user, b24p, installed):
    page = frame_user.login(ADMIN)
    assert page.status_code == 200 and "Правила программы" in text(page)
    assert "Ирина Админова" in text(page)
    # profile was asked at the endpoint stored at install, with the user's token
    assert b24p.urls == [ENDPOINT + "profile"] and b24p.auth_seen == ADMIN


def test_pages_may_be_framed_by_the_portal_only(frame_user):
    page = frame_user.login(ADMIN)
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://example.bitrix24.com;" in policy
    assert "X-Frame-Options" not in page.headers
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "same-origin"


def test_forged_auth_id_gets_401_and_writes_nothing(frame_user, installed):
    before = row_counts()
    response = frame_user.open("forged-token")
    assert response.status_code == 401
    assert "Авторизация Битрикс24 не подтвердилась" in text(response)
    assert "Правила" not in text(response) and "loyalty-token" not in text(response)
    assert row_counts() == before
    assert Portal.get_by_id(installed.id).access_token == "access-1"


def test_domain_from_the_request_is_never_called(frame_user, b24p):
    # A forger points DOMAIN at a host that would "confirm" anything; we never ask it.
    response = frame_user.open(ADMIN, {"DOMAIN": "evil.example.com"})
    assert moved(response)
    assert all(url.startswith(ENDPOINT) for url in b24p.urls)


@pytest.mark.parametrize("form", [{"APPLICATION_TOKEN": "wrong"}, {"member_id": "unknown"},
                                  {"member_id": ""}, {"AUTH_ID": ""}])
def test_frames_that_do_not_match_the_install_are_refused(frame_user, b24p, form):
    response = frame_user.open(ADMIN, **form)
    assert response.status_code == 401
    assert b24p.urls == []  # refused before any call


def test_older_frames_without_application_token_are_proven_by_profile(frame_user):
    response = frame_user.open(ADMIN, APPLICATION_TOKEN="")
    assert moved(response)


def test_uninstalled_portal_and_inactive_user_are_refused(frame_user, installed):
    assert frame_user.open(OUTSIDER).status_code == 401
    Portal.update(status="uninstalled").where(Portal.id == installed.id).execute()
    assert frame_user.open(ADMIN).status_code == 401


def test_opening_the_url_directly_is_refused(client):
    response = client.get("/b24/app")
    assert response.status_code == 401 and "Откройте приложение из Битрикс24" in text(response)
    assert response.headers["Content-Security-Policy"].startswith("frame-ancestors *")


def test_english_when_bitrix24_says_so(frame_user):
    page = frame_user.login(ADMIN, LANG="en")
    assert "Program rules" in text(page) and '<html lang="en">' in text(page)


# --- the viewer token and CSRF ----------------------------------------------------------------

def test_pages_need_a_valid_unexpired_token(frame_user, monkeypatch):
    frame_user.login(ADMIN)
    assert frame_user.get("/b24/app/rules").status_code == 200
    assert frame_user.client.get("/b24/app/rules").status_code == 401
    assert frame_user.client.post("/b24/app/rules?_get=1", data={
        "t": frame_user.token[:-2] + "xx", "csrf": frame_user.csrf}).status_code == 401
    monkeypatch.setattr(frame, "TOKEN_MAX_AGE_S", -1)
    expired = frame_user.get("/b24/app/rules")
    assert expired.status_code == 401 and "Страница устарела" in text(expired)


def test_a_post_without_the_csrf_token_is_refused(frame_user, installed):
    frame_user.login(ADMIN)
    before = row_counts()
    form = {"tiers-0-name": "A", "tiers-0-threshold": "0", "tiers-0-percent": "9"}
    assert frame_user.post("/b24/app/rules", form, csrf=False).status_code == 403
    frame_user.csrf = "0" * 64
    assert frame_user.post("/b24/app/rules", form).status_code == 403
    assert row_counts() == before


def test_a_token_of_another_portal_does_not_open_this_one(frame_user, installed):
    frame_user.login(ADMIN)
    Portal.update(status="uninstalled").where(Portal.id == installed.id).execute()
    assert frame_user.get("/b24/app/rules").status_code == 401


# --- roles ------------------------------------------------------------------------------------

def test_non_admin_without_access_sees_nothing_and_cannot_post(frame_user, installed):
    page = frame_user.login(MANAGER)
    assert "Администратор портала пока не открыл вам доступ" in text(page)
    assert "<form" not in text(page)
    assert frame_user.get("/b24/app/rules").status_code == 403
    assert frame_user.get("/b24/app/clients").status_code == 403
    before = row_counts()
    crafted = frame_user.post("/b24/app/rules", {"tiers-0-name": "Все", "tiers-0-threshold": "0",
                                                 "tiers-0-percent": "99"})
    assert crafted.status_code == 403
    assert frame_user.post("/b24/app/rules/access", {"view_cards": "on"}).status_code == 403
    assert row_counts() == before and ProgramRules.select().count() == 0


def test_non_admin_with_view_right_sees_clients_but_no_edit_forms(frame_user, installed):
    allow(installed, view_cards=True)
    page = frame_user.login(MANAGER)
    assert "Поиск клиента" in text(page)
    assert "Правила" not in text(page) and "Состояние" not in text(page)
    for path in ("/b24/app/rules", "/b24/app/notifications", "/b24/app/health"):
        assert frame_user.get(path).status_code == 403
    assert frame_user.post("/b24/app/health/repair").status_code == 403


def test_admins_change_access_and_it_applies_at_once(frame_user, installed):
    frame_user.login(ADMIN)
    response = frame_user.post("/b24/app/rules/access", {"view_cards": "on", "adjust": "on"})
    assert moved(response)
    assert permissions.load(installed)["access"] == {"view_cards": True, "adjust": True}
    assert PortalSettings.get().updated_by == "b24:user_1 Ирина Админова"


def test_keys_and_tokens_never_appear_in_a_page(frame_user, installed):
    from notifications import settings

    settings.save(installed, {"unisender_api_key": "classic-secret-key-1234",
                              "go_api_key": "go-secret-key-5678"}, actor="test")
    pages = [frame_user.login(ADMIN)]
    for path in ("/b24/app/notifications", "/b24/app/notifications/templates/accrual_email",
                 "/b24/app/notifications/log", "/b24/app/clients", "/b24/app/health"):
        pages.append(frame_user.get(path))
    for page in pages:
        assert page.status_code == 200
        body = text(page)
        for secret in (*SECRETS, "classic-secret-key-1234", "go-secret-key-5678"):
            assert secret not in body, secret
    assert "••••1234" in text(pages[1]) and "••••5678" in text(pages[1])
