"""Inbound form parsing and property converters."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from flask import Flask, request
from werkzeug.datastructures import MultiDict

from activities.forms import (
    PAIRS_MAX, FormError, document_entity, parse_brackets, parse_event, parse_install,
    parse_workflow_call, to_bool, to_date, to_decimal, to_int, to_user_id,
)

ACCESS = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90abcd"
REFRESH = "ff00ee11dd22cc33bb44aa5599668877ff00ee11dd22cc33bb44aa5599668877abcd"
APP_TOKEN = "5d41402abc4b2a76b9719d911017c592"
MEMBER = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
EVENT_TOKEN = ("6790a1b2c3d4e5.71234567|A40211_3187_90412_11873|k3Jd9QpLw0ZtYv1NcR7uH2sXeB5mAa8G"
               ".4be0c2d7f19a6e35b8c04d21e97f3a6c5d0b8e12f4a7c93d6e15b02a8f7c4d91")

SAMPLE_A = [  # protocol doc, sample payload A, pair by pair
    ("workflow_id", "6790a1b2c3d4e5.71234567"),
    ("code", "loyalty_accrue"),
    ("document_id[0]", "crm"),
    ("document_id[1]", "CCrmDocumentContact"),
    ("document_id[2]", "CONTACT_42"),
    ("document_type[0]", "crm"),
    ("document_type[1]", "CCrmDocumentContact"),
    ("document_type[2]", "CONTACT"),
    ("event_token", EVENT_TOKEN),
    ("properties[purchaseAmount]", "1500.50"),
    ("properties[manager]", "user_7"),
    ("properties[sendSms]", "Y"),
    ("properties[channels][0]", "sms"),
    ("properties[channels][1]", "email"),
    ("use_subscription", "Y"),
    ("timeout_duration", "3600"),
    ("ts", "1767225600"),
    ("auth[access_token]", ACCESS),
    ("auth[expires]", "1767229200"),
    ("auth[expires_in]", "3600"),
    ("auth[scope]", "crm,bizproc,im,user_brief"),
    ("auth[domain]", "example.bitrix24.com"),
    ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
    ("auth[status]", "L"),
    ("auth[client_endpoint]", "https://example.bitrix24.com/rest/"),
    ("auth[member_id]", MEMBER),
    ("auth[user_id]", "1"),
    ("auth[refresh_token]", REFRESH),
    ("auth[application_token]", APP_TOKEN),
]
SECRETS = (ACCESS, REFRESH, APP_TOKEN, EVENT_TOKEN)


def without(pairs: list[tuple[str, str]], *keys: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in pairs if k not in keys]


def posted_form(pairs: list[tuple[str, str]]) -> MultiDict:
    """What Flask hands the view for a form-encoded POST of these pairs."""
    app = Flask(__name__)
    with app.test_request_context("/b24/activity/x", method="POST", data=urlencode(pairs),
                                  content_type="application/x-www-form-urlencoded"):
        return request.form.copy()


# --- workflow call ----------------------------------------------------------------------------

def test_sample_a_parses_into_a_workflow_call():
    call = parse_workflow_call(SAMPLE_A)

    assert (call.workflow_id, call.code) == ("6790a1b2c3d4e5.71234567", "loyalty_accrue")
    assert call.document_id == ("crm", "CCrmDocumentContact", "CONTACT_42")
    assert call.document_type == ("crm", "CCrmDocumentContact", "CONTACT")
    assert call.event_token == EVENT_TOKEN
    assert dict(call.properties) == {"purchaseAmount": "1500.50", "manager": "user_7",
                                     "sendSms": "Y", "channels": ["sms", "email"]}
    assert (call.use_subscription, call.timeout_duration, call.ts) == (True, 3600, 1767225600)
    auth = call.auth
    assert (auth.member_id, auth.application_token) == (MEMBER, APP_TOKEN)
    assert (auth.access_token, auth.refresh_token) == (ACCESS, REFRESH)
    assert (auth.expires, auth.expires_in, auth.user_id) == (1767229200, 3600, 1)
    assert auth.scope == ("crm", "bizproc", "im", "user_brief")
    assert auth.domain == "example.bitrix24.com" and auth.status == "L"
    assert auth.client_endpoint == "https://example.bitrix24.com/rest/"
    assert auth.server_endpoint == "https://oauth.bitrix.info/rest/"
    assert document_entity(call.document_id) == ("CONTACT", 42)


def test_sample_a_through_flask_request_form_gives_the_same_object():
    assert parse_workflow_call(posted_form(SAMPLE_A)) == parse_workflow_call(SAMPLE_A)


def test_workflow_call_is_frozen_and_its_repr_hides_tokens():
    call = parse_workflow_call(SAMPLE_A)
    with pytest.raises(AttributeError):
        call.code = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        call.properties["x"] = "y"  # type: ignore[index]
    text = repr(call)
    assert MEMBER in text
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("key, field", [
    ("code", "code"), ("event_token", "event_token"),
    ("auth[member_id]", "auth[member_id]"), ("auth[application_token]", "auth[application_token]"),
])
def test_missing_required_field(key, field):
    with pytest.raises(FormError) as info:
        parse_workflow_call(without(SAMPLE_A, key))
    assert info.value.field == field


def test_auth_without_tokens_is_accepted():
    # §4.4: no resolvable run-as user -> only domain, member_id, application_token
    pairs = [p for p in SAMPLE_A if not p[0].startswith("auth[")] + [
        ("auth[domain]", "example.bitrix24.com"), ("auth[member_id]", MEMBER),
        ("auth[application_token]", APP_TOKEN)]
    auth = parse_workflow_call(pairs).auth
    assert (auth.access_token, auth.refresh_token, auth.expires, auth.user_id) == (
        None, None, None, None)
    assert auth.expires_at(now=1000) == 4600


def test_scope_splits_on_spaces_too_and_no_properties_is_fine():
    pairs = [(k, "crm bizproc, im" if k == "auth[scope]" else v) for k, v in SAMPLE_A
             if not k.startswith("properties[")]
    call = parse_workflow_call(pairs)
    assert call.auth.scope == ("crm", "bizproc", "im")
    assert dict(call.properties) == {}


@pytest.mark.parametrize("pairs", [
    without(SAMPLE_A, "document_id[2]"),
    without(SAMPLE_A, "document_id[0]", "document_id[1]", "document_id[2]"),
    SAMPLE_A + [("timeout_duration", "soon")],
    SAMPLE_A + [("auth[client_endpoint]", "javascript:alert(1)")],
    SAMPLE_A + [("use_subscription", "maybe")],
])
def test_malformed_workflow_call(pairs):
    with pytest.raises(FormError):
        parse_workflow_call(pairs)


# --- brackets ---------------------------------------------------------------------------------

def test_parse_brackets_php_rules():
    parsed = parse_brackets([("a[]", "1"), ("a[]", "2"), ("b[c][0]", "x"), ("b[c][1]", "y"),
                             ("d", "first"), ("d", "last"), ("e[1]", "not-from-zero")])
    assert parsed == {"a": ["1", "2"], "b": {"c": ["x", "y"]}, "d": "last",
                      "e": {"1": "not-from-zero"}}


def test_parse_brackets_accepts_mapping_and_multidict():
    assert parse_brackets({"x[y]": "1"}) == {"x": {"y": "1"}}
    assert parse_brackets(MultiDict([("a[]", "1"), ("a[]", "2")])) == {"a": ["1", "2"]}


@pytest.mark.parametrize("pairs", [
    [("a", "1"), ("a[b]", "2")],
    [("", "x")],
    [(f"k{i}", "v") for i in range(PAIRS_MAX + 1)],
    [("a" + "[x]" * 9, "deep")],
])
def test_parse_brackets_rejects_malformed(pairs):
    with pytest.raises(FormError):
        parse_brackets(pairs)


# --- events -----------------------------------------------------------------------------------

def test_onappinstall_event():
    event = parse_event([
        ("event", "ONAPPINSTALL"), ("data[VERSION]", "3"), ("data[ACTIVE]", "Y"),
        ("data[INSTALLED]", "Y"), ("data[LANGUAGE_ID]", "ru"), ("ts", "1767225600"),
        ("auth[access_token]", ACCESS), ("auth[refresh_token]", REFRESH),
        ("auth[expires_in]", "3600"), ("auth[scope]", "crm,bizproc"),
        ("auth[domain]", "example.bitrix24.com"), ("auth[status]", "L"),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
        ("auth[client_endpoint]", "https://example.bitrix24.com/rest/"),
        ("auth[member_id]", MEMBER), ("auth[application_token]", APP_TOKEN),
        ("auth[user_id]", "1"),
    ])
    assert event.event == "ONAPPINSTALL" and event.ts == 1767225600
    assert dict(event.data) == {"VERSION": "3", "ACTIVE": "Y", "INSTALLED": "Y",
                                "LANGUAGE_ID": "ru"}
    assert event.auth.refresh_token == REFRESH and event.auth.expires is None
    assert event.auth.expires_at(now=1767225600) == 1767229200
    assert all(secret not in repr(event) for secret in SECRETS)


def test_onappuninstall_carries_no_tokens():
    event = parse_event([
        ("event", "ONAPPUNINSTALL"), ("data[LANGUAGE_ID]", "en"), ("data[CLEAN]", "1"),
        ("ts", "1767225600"), ("auth[domain]", "example.bitrix24.com"),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
        ("auth[client_endpoint]", "https://example.bitrix24.com/rest/"),
        ("auth[member_id]", MEMBER), ("auth[application_token]", APP_TOKEN),
    ])
    assert event.event == "ONAPPUNINSTALL" and to_bool(event.data["CLEAN"]) is True
    assert (event.auth.access_token, event.auth.refresh_token) == (None, None)


def test_contact_update_without_access_token():
    event = parse_event(posted_form([
        ("event", "ONCRMCONTACTUPDATE"), ("event_handler_id", "17"), ("data[FIELDS][ID]", "42"),
        ("ts", "1767225600"), ("auth[domain]", "example.bitrix24.com"),
        ("auth[client_endpoint]", "https://example.bitrix24.com/rest/"),
        ("auth[member_id]", MEMBER), ("auth[application_token]", APP_TOKEN),
    ]))
    assert event.event_handler_id == 17
    assert to_int(event.data["FIELDS"]["ID"]) == 42
    assert event.auth.access_token is None


def test_event_requires_event_name_and_application_token():
    with pytest.raises(FormError):
        parse_event([("auth[member_id]", MEMBER), ("auth[application_token]", APP_TOKEN)])
    with pytest.raises(FormError) as info:
        parse_event([("event", "ONAPPINSTALL"), ("auth[member_id]", MEMBER)])
    assert info.value.field == "auth[application_token]"


# --- install ----------------------------------------------------------------------------------

FRAME_FORM = [
    ("AUTH_ID", ACCESS), ("AUTH_EXPIRES", "3600"), ("REFRESH_ID", REFRESH),
    ("SERVER_ENDPOINT", "https://oauth.bitrix.info/rest/"), ("APPLICATION_TOKEN", APP_TOKEN),
    ("APPLICATION_SCOPE", "crm,bizproc,im,user_brief"), ("member_id", MEMBER), ("status", "L"),
    ("PLACEMENT", "DEFAULT"),
]
FRAME_ARGS = {"DOMAIN": "example.bitrix24.com", "PROTOCOL": "1", "LANG": "en", "APP_SID": "abc"}


def test_install_frame():
    install = parse_install(posted_form(FRAME_FORM), FRAME_ARGS)
    auth = install.auth
    assert install.is_frame and (install.lang, install.placement) == ("en", "DEFAULT")
    assert auth.client_endpoint == "https://example.bitrix24.com/rest/"
    assert (auth.access_token, auth.refresh_token, auth.application_token) == (
        ACCESS, REFRESH, APP_TOKEN)
    assert auth.member_id == MEMBER and auth.domain == "example.bitrix24.com"
    assert auth.scope == ("crm", "bizproc", "im", "user_brief") and auth.status == "L"
    assert auth.expires_at(now=100) == 3700
    assert all(secret not in repr(install) for secret in SECRETS)


def test_install_frame_over_http_and_bad_domain():
    http = parse_install(FRAME_FORM, {**FRAME_ARGS, "PROTOCOL": "0"})
    assert http.auth.client_endpoint == "http://example.bitrix24.com/rest/"
    for args in ({}, {"DOMAIN": "evil.example/steal?x="}):
        with pytest.raises(FormError) as info:
            parse_install(FRAME_FORM, args)
        assert info.value.field == "DOMAIN"


@pytest.mark.parametrize("event", [[("event", "ONAPPINSTALL")], []])
def test_install_callback(event):
    install = parse_install(event + [
        ("data[VERSION]", "1"), ("data[LANGUAGE_ID]", "ru"), ("ts", "1767225600"),
        ("auth[access_token]", ACCESS), ("auth[refresh_token]", REFRESH),
        ("auth[expires]", "1767229200"), ("auth[domain]", "example.bitrix24.com"),
        ("auth[client_endpoint]", "https://example.bitrix24.com/rest/"),
        ("auth[member_id]", MEMBER), ("auth[application_token]", APP_TOKEN),
    ])
    assert not install.is_frame and install.lang == "ru"
    assert install.event == ("ONAPPINSTALL" if event else "")
    assert install.auth.refresh_token == REFRESH and install.auth.expires_at(0) == 1767229200


def test_install_rejects_unrelated_posts():
    with pytest.raises(FormError):
        parse_install([("hello", "world")], {})


# --- document ids -----------------------------------------------------------------------------

@pytest.mark.parametrize("document_id, expected", [
    (["crm", "CCrmDocumentContact", "CONTACT_42"], ("CONTACT", 42)),
    (("crm", "CCrmDocumentDeal", "DEAL_7"), ("DEAL", 7)),
    (["crm", "Bitrix\\Crm\\Integration\\BizProc\\Document\\Dynamic", "DYNAMIC_147_1"],
     ("DYNAMIC_147", 1)),
])
def test_document_entity(document_id, expected):
    assert document_entity(document_id) == expected


@pytest.mark.parametrize("document_id", [
    ["crm", "CCrmDocumentContact", "CONTACT"], ["crm", "CCrmDocumentContact", "CONTACT_x"],
    ["crm", "CCrmDocumentContact"], ["lists", "BizprocDocument", "123"], [],
])
def test_document_entity_rejects(document_id):
    with pytest.raises(FormError):
        document_entity(document_id)


# --- converters -------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("1500.50", Decimal("1500.50")), ("1500,50", Decimal("1500.50")),
    ("1 500.50", Decimal("1500.50")), ("1\u00a0500,5", Decimal("1500.5")),
    ("-3", Decimal("-3")), (" 0.10 ", Decimal("0.10")), (7, Decimal(7)),
    (Decimal("2.5"), Decimal("2.5")),
])
def test_to_decimal(raw, expected):
    value = to_decimal(raw, "purchaseAmount")
    assert value == expected and isinstance(value, Decimal)


@pytest.mark.parametrize("raw", ["", "  ", "NaN", "inf", "-Infinity", "1e5", "abc", "1,500.50",
                                 "1.2.3", None, 1.5, True, ["1"], Decimal("NaN")])
def test_to_decimal_rejects(raw):
    with pytest.raises(FormError) as info:
        to_decimal(raw, "purchaseAmount")
    assert info.value.field == "purchaseAmount"


@pytest.mark.parametrize("raw, expected", [
    ("Y", True), ("N", False), ("y", True), ("1", True), ("0", False), ("true", True),
    ("False", False), (True, True),
])
def test_to_bool(raw, expected):
    assert to_bool(raw, "sendSms") is expected


def test_to_bool_default_and_rejects():
    assert to_bool("", "sendSms") is False
    assert to_bool("", "sendSms", default=True) is True
    assert to_bool(None, "sendSms", default=True) is True
    for raw in ("maybe", "2", ["Y"]):
        with pytest.raises(FormError):
            to_bool(raw, "sendSms")


@pytest.mark.parametrize("raw", ["user_7", "7", ["user_7"], "USER_7", (" 7 ",), 7])
def test_to_user_id(raw):
    assert to_user_id(raw, "manager") == 7


@pytest.mark.parametrize("raw", ["", "user_", "group_7", "user_x", "0", "-7",
                                 ["user_7", "user_8"], [], None])
def test_to_user_id_rejects(raw):
    with pytest.raises(FormError) as info:
        to_user_id(raw, "manager")
    assert info.value.field == "manager"


@pytest.mark.parametrize("raw, expected", [
    ("2026-08-21", date(2026, 8, 21)),
    ("2026-08-21T10:15:00", date(2026, 8, 21)),
    ("2001-11-11T02:00:00+02:00", date(2001, 11, 11)),  # §7.1: UTC date is the calendar date
    ("2001-11-10T19:00:00-05:00", date(2001, 11, 11)),
    ("21.08.2026", date(2026, 8, 21)),
    ("21.08.2026 10:15", date(2026, 8, 21)),
    ("21.08.2026 10:15:00", date(2026, 8, 21)),
    ("08/21/2026 10:15:00 pm", date(2026, 8, 21)),
    ("08/21/2026 11:59:59 AM", date(2026, 8, 21)),
    (date(2026, 8, 21), date(2026, 8, 21)),
])
def test_to_date(raw, expected):
    assert to_date(raw, "birthday") == expected


@pytest.mark.parametrize("raw", ["", "31.02.2026", "2026-13-01", "21/08/2026 10:15:00",
                                 "yesterday", None, 20260821])
def test_to_date_rejects(raw):
    with pytest.raises(FormError) as info:
        to_date(raw, "birthday")
    assert info.value.field == "birthday"


@pytest.mark.parametrize("raw, expected", [("1188", 1188), (" -5 ", -5), (0, 0), ("+3", 3)])
def test_to_int(raw, expected):
    assert to_int(raw, "count") == expected


@pytest.mark.parametrize("raw", ["", "1.5", "1e3", "abc", None, True, "9" * 19])
def test_to_int_rejects(raw):
    with pytest.raises(FormError):
        to_int(raw, "count")


def test_error_message_does_not_quote_long_values():
    with pytest.raises(FormError) as info:
        to_decimal("x" * 500, "purchaseAmount")
    assert len(str(info.value)) < 120
