"""A Bitrix24 portal and OAuth server behind `responses`, answering in the protocol
doc's shapes: JSON envelopes, errors in the body, batch sub-commands given as PHP
bracket query strings with $result references, 401 expired_token for stale tokens."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlencode, urlparse

import responses

from activities.forms import parse_brackets

ENDPOINT = "https://example.bitrix24.com/rest/"
OAUTH = "https://oauth.bitrix.info/oauth/token/"
MEMBER = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
APP_TOKEN = "5d41402abc4b2a76b9719d911017c592"


class FakePortal:
    def __init__(self, rsps: responses.RequestsMock, token: str = "access-1",
                 endpoint: str = ENDPOINT):
        self.rsps = rsps  # tests add other services (UniSender) to the same mock
        self.tokens = {token}
        self.activities, self.robots, self.events, self.fields = {}, {}, [], set()
        self.placements: list[tuple[str, str]] = []
        self.contacts: dict[int, dict] = {}
        self.deals: dict[int, dict] = {}
        self.calls: list[tuple[str, dict]] = []  # every method run, batch sub-commands included
        self.requests = 0  # HTTP requests to the portal
        self.failures: dict[str, list[tuple[int, dict]]] = {}  # method -> queued error replies
        self.refreshes = 0
        self._next_id = 100
        rsps.add_callback(responses.POST, re.compile(re.escape(endpoint) + r"[\w.]+"),
                          callback=self._http)
        rsps.add_callback(responses.GET, re.compile(re.escape(OAUTH) + ".*"), callback=self._oauth)

    # -- wire ----------------------------------------------------------------------------------
    def _http(self, request):
        self.requests += 1
        method = urlparse(request.url).path.rsplit("/", 1)[-1]
        body = json.loads(request.body or "{}")
        if body.pop("auth", None) not in self.tokens:
            return 401, {}, json.dumps({"error": "expired_token",
                                        "error_description": "The access token provided has expired."})
        if self.failures.get(method):
            status, error = self.failures[method].pop(0)
            return status, {}, json.dumps(error)
        if method == "batch":
            return 200, {}, json.dumps({"result": self._batch(body), "time": {}})
        status, payload = self._run(method, body)
        return status, {}, json.dumps(payload)

    def _oauth(self, request):
        query = dict(parse_qsl(urlparse(request.url).query))
        if query.get("grant_type") != "refresh_token" or query.get("refresh_token") != "refresh-1":
            return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "bad"})
        self.refreshes += 1
        self.tokens = {"access-2"}
        return 200, {}, json.dumps({
            "access_token": "access-2", "refresh_token": "refresh-2", "expires": 1767232800,
            "expires_in": 3600, "domain": "oauth.bitrix.info", "member_id": MEMBER,
            "server_endpoint": "https://oauth.bitrix.info/rest/", "client_endpoint": ENDPOINT,
            "status": "L", "scope": "crm,bizproc,im,user_brief,placement", "user_id": 1})

    def _batch(self, body):
        results, errors = {}, {}
        for key, command in (body.get("cmd") or {}).items():
            method, _, query = command.partition("?")
            params = self._resolve(parse_brackets(parse_qsl(query, keep_blank_values=True)), results)
            if self.failures.get(method):
                _, error = self.failures[method].pop(0)
                errors[key] = error
                continue
            status, payload = self._run(method, params)
            if status == 200:
                results[key] = payload["result"]
            else:
                errors[key] = payload
        return {"result": results or [], "result_error": errors or [], "result_total": [],
                "result_next": [], "result_time": []}

    def _resolve(self, value, results):
        if isinstance(value, dict):
            return {k: self._resolve(v, results) for k, v in value.items()}
        match = re.fullmatch(r"\$result\[(\w+)\]\[(\w+)\]", value) if isinstance(value, str) else None
        return str(results.get(match[1], {}).get(match[2], "")) if match else value

    # -- methods -------------------------------------------------------------------------------
    def _run(self, method, params):
        self.calls.append((method, params))
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return 400, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": method}
        return handler(params)

    @staticmethod
    def ok(result):
        return 200, {"result": result, "time": {}}

    def m_user_current(self, p):
        return self.ok({"ID": "1", "NAME": "Admin", "ADMIN": True})

    def m_app_info(self, p):
        return self.ok({"ID": 7, "CODE": "local.loyalty", "INSTALLED": True})

    def m_bizproc_activity_list(self, p):
        return self.ok(list(self.activities))

    def m_bizproc_robot_list(self, p):
        return self.ok(list(self.robots))

    def _add(self, store, p):
        if p["CODE"] in self.activities or p["CODE"] in self.robots:
            return 400, {"error": "ERROR_ACTIVITY_ALREADY_INSTALLED",
                         "error_description": "Activity or Robot already installed!"}
        store[p["CODE"]] = p
        return self.ok(True)

    def m_bizproc_activity_add(self, p):
        return self._add(self.activities, p)

    def m_bizproc_robot_add(self, p):
        return self._add(self.robots, p)

    def m_bizproc_activity_update(self, p):
        self.activities[p["CODE"]].update(p["FIELDS"])
        return self.ok(True)

    def m_bizproc_robot_update(self, p):
        self.robots[p["CODE"]].update(p["FIELDS"])
        return self.ok(True)

    def m_event_get(self, p):
        return self.ok([{"event": e, "handler": h, "auth_type": "0", "offline": 0}
                        for e, h in self.events])

    def m_event_bind(self, p):
        if (p["event"], p["handler"]) in self.events:
            return 400, {"error": "ERROR_CORE",
                         "error_description": "Unable to set event handler: Handler already binded"}
        self.events.append((p["event"], p["handler"]))
        return self.ok(True)

    def m_placement_get(self, p):
        return self.ok([{"placement": code, "handler": handler, "title": "Бонусы", "options": []}
                        for code, handler in self.placements])

    def m_placement_bind(self, p):
        if (p["PLACEMENT"], p["HANDLER"]) in self.placements:
            return 400, {"error": "ERROR_CORE",
                         "error_description": "Unable to set placement handler: Handler already binded"}
        self.placements.append((p["PLACEMENT"], p["HANDLER"]))
        return self.ok(True)

    def m_crm_contact_userfield_list(self, p):
        name = p.get("filter", {}).get("FIELD_NAME")
        return self.ok([{"ID": "1", "FIELD_NAME": name}] if name in self.fields else [])

    def m_crm_contact_userfield_add(self, p):
        self.fields.add("UF_CRM_" + p["fields"]["FIELD_NAME"])
        return self.ok(len(self.fields))

    def m_crm_contact_get(self, p):
        contact = self.contacts.get(int(p.get("id") or 0))
        if contact is None:
            return 400, {"error": "", "error_description": "Not found"}
        return self.ok(contact)

    def m_crm_deal_get(self, p):
        deal = self.deals.get(int(p.get("id") or 0))
        if deal is None:
            return 400, {"error": "", "error_description": "Not found"}
        return self.ok(deal)

    def m_crm_contact_update(self, p):
        contact = self.contacts.get(int(p["id"]))
        if contact is None:
            return 400, {"error": "", "error_description": "Contact is not found"}
        contact.update(p["fields"])
        return self.ok(True)

    def m_crm_timeline_logmessage_add(self, p):
        self._next_id += 1
        return self.ok({"logMessage": {"id": self._next_id, **p.get("fields", {})}})

    def m_crm_timeline_comment_add(self, p):
        self._next_id += 1
        return self.ok(self._next_id)

    def m_bizproc_event_send(self, p):
        return self.ok(True)

    def m_im_notify_personal_add(self, p):
        self._next_id += 1
        return self.ok(self._next_id)

    # -- helpers for tests ---------------------------------------------------------------------
    def sent(self, method):
        return [params for name, params in self.calls if name == method]

    def add_contact(self, contact_id=42, **fields):
        contact = {"ID": str(contact_id), "NAME": "Анна", "LAST_NAME": "Петрова",
                   "SECOND_NAME": "", "ASSIGNED_BY_ID": "7",
                   "BIRTHDATE": "1990-05-17T03:00:00+03:00",
                   "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": "+7 495 123-45-67",
                              "TYPE_ID": "PHONE"},
                             {"ID": "2", "VALUE_TYPE": "MOBILE", "VALUE": "8 (916) 123-45-67",
                              "TYPE_ID": "PHONE"}],
                   "EMAIL": [{"ID": "3", "VALUE_TYPE": "WORK", "VALUE": "anna@example.ru",
                              "TYPE_ID": "EMAIL"}],
                   "UF_CRM_CATEGORY": "Врач", **fields}
        self.contacts[contact_id] = contact
        return contact


def workflow_form(code: str, document: str = "CONTACT_42", properties: dict | None = None,
                  token: str = "6790a1b2c3d4e5.71234567|A40211_3187_90412_11873|k3Jd9Qp.4be0c2",
                  app_token: str = APP_TOKEN) -> list[tuple[str, str]]:
    """The form Bitrix24 posts to an activity handler (protocol doc, sample A)."""
    entity = document.split("_", 1)[0]
    doc_class = {"CONTACT": "CCrmDocumentContact", "DEAL": "CCrmDocumentDeal"}[entity]
    pairs = [("workflow_id", "6790a1b2c3d4e5.71234567"), ("code", code),
             ("document_id[0]", "crm"), ("document_id[1]", doc_class), ("document_id[2]", document),
             ("document_type[0]", "crm"), ("document_type[1]", doc_class),
             ("document_type[2]", entity), ("event_token", token)]
    pairs += [(f"properties[{k}]", v) for k, v in (properties or {}).items()]
    pairs += [("use_subscription", "Y"), ("timeout_duration", "3600"), ("ts", "1767225600")]
    pairs += [(f"auth[{k}]", v) for k, v in {
        "access_token": "run-as-user-token", "expires": "1767229200", "expires_in": "3600",
        "scope": "crm,bizproc,im,user_brief", "domain": "example.bitrix24.com",
        "server_endpoint": "https://oauth.bitrix.info/rest/", "status": "L",
        "client_endpoint": ENDPOINT, "member_id": MEMBER, "user_id": "1",
        "refresh_token": "run-as-refresh", "application_token": app_token}.items()]
    return pairs


FORM = "application/x-www-form-urlencoded"


def post_form(client, path: str, pairs):
    """POST the pairs url-encoded, as the Bitrix24 queue server does."""
    return client.post(path, data=urlencode(pairs), content_type=FORM)
