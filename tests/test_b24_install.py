"""Install (both forms), events, and the CLI, against a fake portal."""
from __future__ import annotations

from b24fake import APP_TOKEN, ENDPOINT, MEMBER

from activities.definitions import ACTIVITIES
from api.ledger import cards
from api.models import B24Event, Card, Portal

FRAME = {"AUTH_ID": "access-1", "AUTH_EXPIRES": "3600", "REFRESH_ID": "refresh-1",
         "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/", "APPLICATION_TOKEN": APP_TOKEN,
         "APPLICATION_SCOPE": "crm,bizproc,im,user_brief,placement", "member_id": MEMBER,
         "status": "L", "PLACEMENT": "DEFAULT"}
FRAME_QUERY = "?DOMAIN=example.bitrix24.com&PROTOCOL=1&LANG=ru&APP_SID=abc"


def callback_form(event="ONAPPINSTALL", app_token=APP_TOKEN, tokens=True, **data):
    form = {"event": event, "ts": "1767225600", "auth[domain]": "example.bitrix24.com",
            "auth[server_endpoint]": "https://oauth.bitrix.info/rest/", "auth[status]": "L",
            "auth[client_endpoint]": ENDPOINT, "auth[member_id]": MEMBER,
            "auth[application_token]": app_token, "auth[scope]": "crm,bizproc,im,user_brief"}
    if tokens:
        form.update({"auth[access_token]": "access-1", "auth[refresh_token]": "refresh-1",
                     "auth[expires_in]": "3600", "auth[user_id]": "1"})
    form.update({f"data[{k}]": v for k, v in data.items()})
    return form


def test_install_frame_registers_everything_and_finishes(client, b24):
    response = client.post("/b24/install" + FRAME_QUERY, data=FRAME)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "BX24.installFinish()" in page and "//api.bitrix24.com/api/v1/" in page
    portal = Portal.get(Portal.member_id == MEMBER)
    assert (portal.client_endpoint, portal.refresh_token, portal.application_token) == \
        (ENDPOINT, "refresh-1", APP_TOKEN)
    assert portal.installed_by_user_id == 1 and portal.status == "active"
    codes = {a.code for a in ACTIVITIES}
    assert set(b24.activities) == codes
    assert set(b24.robots) == {c + "_robot" for c in codes}
    add = b24.activities["loyalty_bonus_debit"]
    assert add["HANDLER"] == "https://loyalty.example.com/b24/activities/loyalty_bonus_debit"
    assert add["USE_SUBSCRIPTION"] == "Y" and add["AUTH_USER_ID"] == "1"
    assert add["NAME"] == {"ru": "Списать бонусы с проверкой баланса",
                           "en": "Debit bonuses with a balance check"}
    assert add["PROPERTIES"]["Amount"]["Type"] == "double"
    assert {"Success", "Error", "Debited", "Balance"} <= set(add["RETURN_PROPERTIES"])
    assert sorted(e for e, _ in b24.events) == ["ONAPPINSTALL", "ONAPPUNINSTALL",
                                                 "ONCRMCONTACTUPDATE"]
    assert set(b24.fields) == {"UF_CRM_LOYALTY_CARD", "UF_CRM_LOYALTY_BAL", "UF_CRM_LOYALTY_TIER"}
    balance = b24.fields["UF_CRM_LOYALTY_BAL"]
    assert balance["LABEL"] == "Бонусный баланс" and balance["USER_TYPE_ID"] == "double"
    for label in ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL"):
        assert balance[label] == {"ru": "Бонусный баланс", "en": "Bonus balance"}
    assert b24.placements == [
        ("CRM_CONTACT_DETAIL_TAB", "https://loyalty.example.com/b24/placements/contact"),
        ("CRM_DEAL_DETAIL_TAB", "https://loyalty.example.com/b24/placements/deal")]
    # user.admin (the proof), one batch to read what exists, one to write what is missing
    assert b24.requests == 3


def test_install_again_repairs_and_adds_nothing_twice(client, b24):
    client.post("/b24/install" + FRAME_QUERY, data=FRAME)
    del b24.activities["loyalty_card_info"]  # as an app update would wipe it
    b24.calls.clear()
    response = client.post("/b24/install" + FRAME_QUERY, data=FRAME)
    assert "BX24.installFinish()" in response.get_data(as_text=True)
    methods = [m for m, _ in b24.calls]
    assert methods.count("bizproc.activity.add") == 1 and methods.count("event.bind") == 0
    assert methods.count("crm.contact.userfield.add") == 0
    assert methods.count("placement.bind") == 0
    assert methods.count("bizproc.activity.update") == 8  # the other actions
    assert len(b24.events) == 3 and "loyalty_card_info" in b24.activities


def test_the_deal_event_an_earlier_version_bound_is_unbound(client, b24):
    handler = "https://loyalty.example.com/b24/events"
    b24.events.append(("ONCRMDEALUPDATE", handler))
    client.post("/b24/install" + FRAME_QUERY, data=FRAME)
    assert ("ONCRMDEALUPDATE", handler) not in b24.events
    assert b24.sent("event.unbind") == [{"event": "ONCRMDEALUPDATE", "handler": handler}]


def test_deal_events_are_not_stored(client, installed):
    client.post("/b24/events", data=callback_form("ONCRMDEALUPDATE", tokens=False,
                                                  **{"FIELDS][ID": "5"}))
    assert B24Event.select().count() == 0


def test_install_callback_form_answers_json(client, b24):
    response = client.post("/b24/install", data=callback_form())
    assert response.get_json()["installed"] is True
    assert Portal.get(Portal.member_id == MEMBER).access_token == "access-1"


def test_install_forged_for_a_known_portal_is_refused(client, b24, installed):
    b24.tokens = {"access-1"}
    forged = {**FRAME, "AUTH_ID": "stolen", "APPLICATION_TOKEN": "evil"}
    response = client.post("/b24/install?DOMAIN=evil.example.com&PROTOCOL=1", data=forged)
    assert response.status_code == 401
    portal = Portal.get_by_id(installed.id)
    assert portal.application_token == APP_TOKEN and portal.client_endpoint == ENDPOINT
    assert b24.sent("bizproc.activity.add") == []


def test_a_refused_optional_write_still_finishes_and_says_what_failed(client, b24):
    refusal = "Имя поля слишком длинное (больше 20-ти символов)."
    b24.failures["crm.contact.userfield.add"] = [(400, {"error": "ERROR_CORE",
                                                        "error_description": refusal})]
    page = client.post("/b24/install" + FRAME_QUERY, data=FRAME).get_data(as_text=True)
    assert "BX24.installFinish()" in page and 'data-install="partial"' in page
    assert f"Поле контакта UF_CRM_LOYALTY_CARD: ERROR_CORE {refusal}" in page
    assert "«Состояние»" in page and "b24 register" in page
    assert "2 contact fields created, 1 errors" in page
    assert len(b24.activities) == 9 and len(b24.events) == 3


def test_a_refused_activity_does_not_finish(client, b24):
    b24.failures["bizproc.robot.add"] = [(400, {"error": "ERROR_ACTIVITY_ADD_FAILURE",
                                                "error_description": "Activity save error!"})]
    page = client.post("/b24/install" + FRAME_QUERY, data=FRAME).get_data(as_text=True)
    assert "installFinish" not in page
    assert "Действие loyalty_card_create_robot: ERROR_ACTIVITY_ADD_FAILURE Activity save error!" \
        in page
    body = client.post("/b24/install", data=callback_form()).get_json()
    assert body["installed"] is True  # opened again: repaired, nothing was lost


def test_after_the_install_the_contact_shows_the_balance(app, client, b24):
    from b24fake import post_form, workflow_form

    client.post("/b24/install" + FRAME_QUERY, data=FRAME)
    b24.add_contact(42)
    cards.create_card(Portal.get(Portal.member_id == MEMBER), {
        "phone": "9161234567", "last_name": "П", "first_name": "А", "client_category": "В",
        "contact_id": 42}, actor="t")
    post_form(client, "/b24/activities/loyalty_bonus_accrue",
              workflow_form("loyalty_bonus_accrue", properties={"Amount": "10000"}))
    app.extensions["worker"].tick()
    contact = b24.contacts[42]  # the portal kept only the fields it has
    assert (contact["UF_CRM_LOYALTY_CARD"], contact["UF_CRM_LOYALTY_BAL"]) == \
        ("79161234567", "300.00")


def test_the_fake_portal_refuses_what_the_server_refuses(b24, installed, app):
    from activities.portals import B24Settings, client_for

    client = client_for(installed, B24Settings.from_config(app.config))
    def add(**fields):
        return client.batch({"f": ("crm.contact.userfield.add", {"fields": {
            "USER_TYPE_ID": "double", **fields}})}).errors.get("f")
    too_long = add(FIELD_NAME="LOYALTY_BALANCE", LABEL="Баланс")  # UF_CRM_ + 15 = 22
    assert too_long.code == "ERROR_CORE" and "20" in too_long.description
    as_map = add(FIELD_NAME="LOYALTY_BAL", LABEL={"ru": "Баланс", "en": "Balance"})
    assert "must be of type string" in as_map.description
    assert add(FIELD_NAME="LOYALTY_BAL", LABEL="Баланс") is None
    assert set(b24.fields) == {"UF_CRM_LOYALTY_BAL"}  # 18 characters: fits


def test_registration_failure_keeps_the_portal_and_does_not_finish(client, b24):
    b24.failures["batch"] = [(403, {"error": "ACCESS_DENIED", "error_description": "Access denied!"})]
    page = client.post("/b24/install" + FRAME_QUERY, data=FRAME).get_data(as_text=True)
    assert "installFinish" not in page and "ACCESS_DENIED" in page
    assert Portal.get(Portal.member_id == MEMBER).refresh_token == "refresh-1"


def test_events_need_the_stored_application_token(client, installed):
    response = client.post("/b24/events", data=callback_form("ONCRMCONTACTUPDATE", app_token="x",
                                                             tokens=False, **{"FIELDS][ID": "42"}))
    assert response.status_code == 401 and B24Event.select().count() == 0
    client.post("/b24/events", data=callback_form("ONCRMCONTACTUPDATE", tokens=False,
                                                  **{"FIELDS][ID": "42"}))
    assert [(e.event, e.entity_id) for e in B24Event.select()] == [("ONCRMCONTACTUPDATE", 42)]


def test_uninstall_keeps_the_ledger_and_forgets_the_tokens(client, installed):
    cards.create_card(installed, {"phone": "9161234567", "last_name": "П", "first_name": "А",
                                  "client_category": "В"}, actor="t")
    form = callback_form("ONAPPUNINSTALL", tokens=False, CLEAN="1", LANGUAGE_ID="ru")
    assert client.post("/b24/events", data=form).status_code == 200
    portal = Portal.get_by_id(installed.id)
    assert portal.status == "uninstalled" and portal.access_token is None
    assert Card.select().count() == 1


def test_onappinstall_event_stores_tokens(client, b24):
    assert client.post("/b24/events", data=callback_form(VERSION="1", ACTIVE="Y",
                                                         INSTALLED="Y")).status_code == 200
    portal = Portal.get(Portal.member_id == MEMBER)
    assert (portal.access_token, portal.application_token) == ("access-1", APP_TOKEN)


def test_cli_register_and_portals(runner, b24, installed):
    result = runner.invoke(args=["b24", "register", "--portal", MEMBER])
    assert result.exit_code == 0, result.output
    assert ("18 added, 0 updated, 3 events bound, 2 tabs bound, 3 contact fields created, "
            "0 errors") in result.output
    listing = runner.invoke(args=["b24", "portals"]).output
    assert MEMBER in listing and "active" in listing and "1 portal(s)." in listing


def test_cli_marks_a_portal_whose_uninstall_event_was_lost(runner, client, b24, installed):
    """Without it, an 'active' portal keeps its old application_token and every reinstall
    (which brings a new one) is refused."""
    reinstall = callback_form(app_token="new-app-token")
    assert client.post("/b24/install", data=reinstall).status_code == 401
    result = runner.invoke(args=["b24", "uninstalled", "--portal", MEMBER])
    assert result.exit_code == 0 and "marked uninstalled" in result.output
    portal = Portal.get_by_id(installed.id)
    assert (portal.status, portal.access_token, portal.refresh_token) == ("uninstalled", None, None)
    again = runner.invoke(args=["b24", "uninstalled", "--portal", MEMBER])
    assert "already uninstalled" in again.output
    unknown = runner.invoke(args=["b24", "uninstalled", "--portal", "nobody"])
    assert unknown.exit_code != 0 and "No portal nobody" in unknown.output
    assert client.post("/b24/install", data=reinstall).status_code == 200
    assert Portal.get_by_id(installed.id).application_token == "new-app-token"


def test_the_fake_batch_runs_50_and_halts_like_the_portal(b24, installed, app):
    from activities import b24client
    from activities.portals import B24Settings, client_for

    client = client_for(installed, B24Settings.from_config(app.config))
    cmds = {f"c{n}": "user.current" for n in range(52)}
    body = client.call("batch", {"halt": 0, "cmd": {**cmds, "nested": "batch?halt=0"}})
    errors = body["result"]["result_error"]
    assert len(body["result"]["result"]) == 50 and errors["c50"]["error"] == \
        "ERROR_BATCH_LENGTH_EXCEEDED"
    halted = client.batch({"a": ("crm.contact.get", {"id": 1}), "b": ("user.current", {})},
                          halt=True)
    assert "a" in halted.errors and "b" not in halted.results  # never ran
    assert b24client.BATCH_COMMANDS_MAX == 50


def test_every_contact_field_code_fits_the_portals_limit():
    from activities.contacts import UF_CODE_MAX, UF_PREFIX, USER_FIELDS

    assert all(len(UF_PREFIX + name) <= UF_CODE_MAX for name, _, _ in USER_FIELDS)
