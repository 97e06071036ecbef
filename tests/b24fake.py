"""A Bitrix24 portal and OAuth server behind `responses`, answering in the protocol
doc's shapes: JSON envelopes, errors in the body, batch sub-commands given as PHP
bracket query strings with $result references, 401 expired_token for stale tokens.

Each method refuses what the real one refuses, as its page in bitrix-tools/b24-rest-docs
(and the protocol doc, where it read the server source) says: a map LABEL or a code over
20 characters for crm.contact.userfield.add, bad codes, names and handler URLs for
bizproc.activity/robot.add, unknown events for event.bind, empty arguments for
placement.bind, an empty user or message for im.*, missing fields for crm.timeline.*,
commands past the 50th or a nested batch in a batch (`halt` stops at the first failure).
Every answer carries `time` with the method's `operating` seconds in the rolling 10-minute
window (limits doc §B1), and a method over OPERATING_MAX_S is refused with 429
OPERATION_TIME_LIMIT."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlencode, urlparse

import requests
import responses

from activities.forms import parse_brackets

ENDPOINT = "https://example.bitrix24.com/rest/"
OAUTH = "https://oauth.bitrix.info/oauth/token/"
OAUTH_HOSTS = ("oauth.bitrix.info", "oauth.bitrix24.tech")
CLIENT_ID = "local.6790a1b2c3d4e5.12345678"  # the app's, as tests/conftest.py configures it
DOMAIN = "example.bitrix24.com"
OPERATING_MAX_S = 480  # per method and app in 10 minutes (limits doc, the docs' worked example)
OPERATING_WINDOW_S = 600
BATCH_MAX = 50
UF_CODE_MAX = 20  # older cores: strlen(FIELD_NAME) > 20 is USER_TYPE_FIELD_NAME_TOO_LONG
KNOWN_EVENTS = {"ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONCRMCONTACTADD",
                "ONCRMCONTACTUPDATE", "ONCRMCONTACTDELETE", "ONCRMDEALADD", "ONCRMDEALUPDATE",
                "ONCRMDEALDELETE"}
CODE_RE = re.compile(r"^[a-z0-9.\-_]+$", re.I)
PROPERTY_RE = re.compile(r"^[a-z][a-z0-9_]*$", re.I)
MEMBER = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
APP_TOKEN = "5d41402abc4b2a76b9719d911017c592"


class FakePortal:
    def __init__(self, rsps: responses.RequestsMock, token: str = "access-1",
                 endpoint: str = ENDPOINT):
        self.rsps = rsps  # tests add other services (UniSender) to the same mock
        self.tokens = {token}
        self.activities, self.robots, self.events = {}, {}, []
        self.fields: dict[str, dict] = {}  # UF_CRM_… -> the fields it was created with
        self.placements: list[tuple[str, str]] = []
        self.offline_bound: list[str] = []  # events bound with event_type=offline
        self.offline_queue: list[dict] = []  # event.offline.get records; see queue_offline
        self._reserved: dict[str, list[dict]] = {}  # process_id -> records taken, not cleared
        self.contacts: dict[int, dict] = {}
        self.deals: dict[int, dict] = {}
        self.product_rows: dict[int, list[dict]] = {}  # deal id -> crm.deal.productrows.get rows
        self.products: dict[int, dict] = {}  # catalog.product.get: id, iblockSectionId, …
        self.scopes = {"crm", "bizproc", "im", "user_brief", "placement"}
        self.calls: list[tuple[str, dict]] = []  # every method run, batch sub-commands included
        self.requests = 0  # HTTP requests to the portal
        self.failures: dict[str, list[tuple[int, dict]]] = {}  # method -> queued error replies
        self.refreshes = 0
        self._token = None  # the token of the request being answered
        self.oauth_host = "oauth.bitrix.info"  # the OAuth server this portal belongs to
        self.oauth_requests: list[str] = []  # URLs asked at either OAuth server
        self.admins = {1}  # user ids for whom user.admin answers true
        self.lose_answers: dict[str, int] = {}  # method -> requests that run, then time out
        self._next_id = 100
        self.notifications: list[dict] = []  # im.notify.*: a new TAG removes the older ones
        self.messages: list[dict] = []  # im.message.add
        self.clock = lambda: 1767225600.0  # tests move it to age the operating window
        self.cost_s: dict[str, float] = {}  # method -> run time each call is charged
        self._operating: dict[str, list[tuple[float, float]]] = {}  # method -> (at, seconds)
        rsps.add_callback(responses.POST, re.compile(re.escape(endpoint) + r"[\w.]+"),
                          callback=self._http)
        for host in OAUTH_HOSTS:
            # POST only: we send secrets in the body, and a GET with them in the query
            # string must fail loudly here rather than leak quietly in production.
            rsps.add_callback(responses.POST, f"https://{host}/oauth/token/", callback=self._oauth)
            rsps.add_callback(responses.POST, f"https://{host}/rest/app.info",
                              callback=self._oauth_app_info)

    def user_of(self, token) -> int:
        """Whose token it is (subclasses with several users override this)."""
        return 1

    # -- wire ----------------------------------------------------------------------------------
    def _http(self, request):
        self.requests += 1
        method = urlparse(request.url).path.rsplit("/", 1)[-1]
        body = json.loads(request.body or "{}")
        self._token = body.pop("auth", None)
        if self._token not in self.tokens:
            return 401, {}, json.dumps({"error": "expired_token",
                                        "error_description": "The access token provided has expired."})
        if self.failures.get(method):
            status, error = self.failures[method].pop(0)
            return status, {}, json.dumps(error)
        if method == "batch":
            status, payload = self._batch_call(body)
        else:
            status, payload = self._run(method, body)
        if self.lose_answers.get(method):  # the portal did the work; its answer never comes
            self.lose_answers[method] -= 1
            raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=30)")
        return status, {}, json.dumps(payload)

    def _oauth_app_info(self, request):
        """app.info at the OAuth server: who the token belongs to (b24pysdk's shape)."""
        self.oauth_requests.append(request.url)
        token = dict(parse_qsl(request.body or "")).get("auth")
        if urlparse(request.url).hostname != self.oauth_host or token not in self.tokens:
            return 401, {}, json.dumps({"error": "invalid_token",
                                        "error_description": "Unable to get application by token"})
        return 200, {}, json.dumps({"result": {
            "client_id": CLIENT_ID, "scope": "crm,bizproc,im,user_brief,placement",
            "expires": "2027-01-01T01:00:00+00:00", "user_id": self.user_of(token),
            "install": {"installed": True, "version": 1, "status": "L",
                        "scope": "crm,bizproc,im,user_brief,placement", "domain": DOMAIN,
                        "uri": f"https://{DOMAIN}", "client_endpoint": ENDPOINT,
                        "member_id": MEMBER, "member_type": "B"}}, "time": {}})

    def _oauth(self, request):
        self.oauth_requests.append(request.url)
        query = dict(parse_qsl(request.body or ""))
        if urlparse(request.url).hostname != self.oauth_host:
            return 401, {}, json.dumps({"error": "invalid_client", "error_description": "other"})
        if query.get("grant_type") != "refresh_token" or query.get("refresh_token") != "refresh-1":
            return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "bad"})
        self.refreshes += 1
        self.tokens = {"access-2"}
        return 200, {}, json.dumps({
            "access_token": "access-2", "refresh_token": "refresh-2", "expires": 1767232800,
            "expires_in": 3600, "domain": "oauth.bitrix.info", "member_id": MEMBER,
            "server_endpoint": f"https://{self.oauth_host}/rest/", "client_endpoint": ENDPOINT,
            "status": "L", "scope": "crm,bizproc,im,user_brief,placement", "user_id": 1})

    def _batch_call(self, body):
        return 200, {"result": self._batch(body), "time": self._time("batch")}

    def _batch(self, body):
        """settings/how-to-call-rest-api/batch.md: commands past the 50th and nested batches
        fail one by one; `halt` stops at the first failure (the rest never run)."""
        results, errors, times = {}, {}, {}
        halt = str(body.get("halt", 0)).lower() in ("1", "true")
        for n, (key, command) in enumerate((body.get("cmd") or {}).items()):
            if halt and errors:
                break
            method, _, query = command.partition("?")
            if n >= BATCH_MAX:
                errors[key] = {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                               "error_description": f"Max batch length exceeded {BATCH_MAX}"}
                continue
            if method.lower() == "batch":
                errors[key] = {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                               "error_description": "Method is not allowed for batch usage"}
                continue
            params = self._resolve(parse_brackets(parse_qsl(query, keep_blank_values=True)), results)
            if self.failures.get(method):
                _, error = self.failures[method].pop(0)
                errors[key] = error
                continue
            status, payload = self._run(method, params)
            if status == 200:
                results[key] = payload["result"]
                times[key] = payload.get("time", {})
            else:
                errors[key] = {k: v for k, v in payload.items() if k != "time"}
        return {"result": results or [], "result_error": errors or [], "result_total": [],
                "result_next": [], "result_time": times or []}

    # -- method run time (limits doc §B1) ------------------------------------------------------
    def operating(self, method: str) -> float:
        """Seconds this app spent in `method` over the last 10 minutes."""
        now = self.clock()
        spans = [(at, s) for at, s in self._operating.get(method, [])
                 if at > now - OPERATING_WINDOW_S]
        self._operating[method] = spans
        return sum(s for _, s in spans)

    def _charge(self, method: str) -> None:
        if self.cost_s.get(method):
            self._operating.setdefault(method, []).append((self.clock(), self.cost_s[method]))

    def _time(self, method: str) -> dict:
        now, operating = self.clock(), self.operating(method)  # drops the minutes gone by
        spans = self._operating.get(method) or [(now, 0)]
        return {"start": now, "finish": now, "duration": 0, "processing": 0,
                "operating": operating,
                "operating_reset_at": int(spans[0][0] + OPERATING_WINDOW_S)}

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
        if self.operating(method) >= OPERATING_MAX_S:
            return 429, {"error": "OPERATION_TIME_LIMIT",
                         "error_description": "Method is blocked due to operation time limit."}
        self._charge(method)
        status, payload = handler(params)
        if status == 200:
            payload.setdefault("time", self._time(method))
        return status, payload

    @staticmethod
    def ok(result):
        return 200, {"result": result}

    @staticmethod
    def refuse(code, description, status=400):
        return status, {"error": code, "error_description": description}

    def m_user_current(self, p):
        return self.ok({"ID": "1", "NAME": "Admin", "ADMIN": True})

    def m_user_admin(self, p):
        return self.ok(self.user_of(self._token) in self.admins)

    def m_app_info(self, p):
        return self.ok({"ID": 7, "CODE": "local.loyalty", "INSTALLED": True})

    def m_bizproc_activity_list(self, p):
        return self.ok(list(self.activities))

    def m_bizproc_robot_list(self, p):
        return self.ok(list(self.robots))

    def _add(self, store, p):
        refused = self._activity_refusal(p)
        if refused:
            return refused
        if p["CODE"] in self.activities or p["CODE"] in self.robots:
            return self.refuse("ERROR_ACTIVITY_ALREADY_INSTALLED",
                               "Activity or Robot already installed!")
        store[p["CODE"]] = p
        return self.ok(True)

    def _activity_refusal(self, p):
        """bizproc.activity.add's checks (protocol §3.1, RestService::addActivityInternal)."""
        invalid = "ERROR_ACTIVITY_VALIDATION_FAILURE"
        code = p.get("CODE")
        if not code:
            return self.refuse(invalid, "Empty activity code!")
        if not isinstance(code, str) or not CODE_RE.match(code):
            return self.refuse(invalid, "Wrong activity code!")
        if not _handler_ok(p.get("HANDLER")):
            return self.refuse("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
        if not p.get("NAME"):
            return self.refuse(invalid, "Empty activity NAME!")
        for group in ("PROPERTIES", "RETURN_PROPERTIES"):
            props = p.get(group) or {}
            if not isinstance(props, dict):
                return self.refuse(invalid, "Wrong properties array!")
            for key, spec in props.items():
                if not PROPERTY_RE.match(key):
                    return self.refuse(invalid, f"Wrong property key ({key})!")
                if not isinstance(spec, dict) or not (spec.get("Name") or spec.get("NAME")):
                    return self.refuse(invalid, f"Empty property NAME ({key})!")
        if "FILTER" in p and not isinstance(p["FILTER"], dict):
            return self.refuse(invalid, "Wrong activity FILTER!")
        return None

    def m_bizproc_activity_add(self, p):
        return self._add(self.activities, p)

    def m_bizproc_robot_add(self, p):
        return self._add(self.robots, p)

    def _update(self, store, p):
        if p.get("CODE") not in store:  # the lookup checks the robot flag too (§3.2)
            return self.refuse("ERROR_ACTIVITY_NOT_FOUND", "Activity or Robot not found!")
        if not p.get("FIELDS"):
            return self.refuse("ERROR_ACTIVITY_VALIDATION_FAILURE", "No fields to update")
        merged = {**store[p["CODE"]], **p["FIELDS"]}
        refused = self._activity_refusal(merged)
        if refused:
            return refused
        store[p["CODE"]] = merged
        return self.ok(True)

    def m_bizproc_activity_update(self, p):
        return self._update(self.activities, p)

    def m_bizproc_robot_update(self, p):
        return self._update(self.robots, p)

    def m_event_get(self, p):
        return self.ok([{"event": e, "handler": h, "auth_type": "0", "offline": 0}
                        for e, h in self.events]
                       + [{"event": e, "handler": "", "auth_type": "0", "offline": 1}
                          for e in self.offline_bound])

    def m_event_bind(self, p):
        event = str(p.get("event") or "").upper()
        if event not in KNOWN_EVENTS:
            return self.refuse("ERROR_EVENT_NOT_FOUND", "Event not found")
        if p.get("event_type") == "offline":  # no handler: the portal keeps a queue
            if event in self.offline_bound:
                return self.refuse("ERROR_CORE", "Unable to set event handler: Handler already binded")
            self.offline_bound.append(event)
            return self.ok(True)
        if not _handler_ok(p.get("handler")):
            return self.refuse("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
        if (event, p["handler"]) in self.events:
            return self.refuse("ERROR_CORE", "Unable to set event handler: Handler already binded")
        self.events.append((event, p["handler"]))
        return self.ok(True)

    def m_event_unbind(self, p):
        event, handler = str(p.get("event") or "").upper(), p.get("handler")
        if not event:
            return self.refuse("ERROR_EVENT_NOT_FOUND", "Event not found")
        kept = [(e, h) for e, h in self.events
                if not (e == event and (not handler or h == handler))]
        count, self.events = len(self.events) - len(kept), kept
        return self.ok({"count": count})

    def m_placement_get(self, p):
        return self.ok([{"placement": code, "handler": handler, "title": "Бонусы", "options": []}
                        for code, handler in self.placements])

    def m_placement_bind(self, p):
        for argument in ("PLACEMENT", "HANDLER"):
            if not p.get(argument):
                return 200, {"error": "ERROR_ARGUMENT", "argument": argument,
                             "error_description": f"Argument '{argument}' is null or empty"}
        if not _handler_ok(p["HANDLER"]):
            return self.refuse("ERROR_WRONG_HANDLER_URL", "Wrong handler URL")
        if (p["PLACEMENT"], p["HANDLER"]) in self.placements:
            return self.refuse("ERROR_CORE",
                               "Unable to set placement handler: Handler already binded")
        self.placements.append((p["PLACEMENT"], p["HANDLER"]))
        return self.ok(True)

    def m_crm_contact_userfield_list(self, p):
        name = p.get("filter", {}).get("FIELD_NAME")
        return self.ok([{"ID": "1", "FIELD_NAME": name, **self.fields[name]}]
                       if name in self.fields else [])

    def m_crm_contact_userfield_add(self, p):
        """rest/lib/userfieldproxy.php: LABEL is trim()med first (a map is a PHP TypeError),
        then the name is prefixed UF_CRM_ and checked by CUserTypeEntity::CheckFields."""
        fields = p.get("fields") or {}
        label = fields.get("LABEL", "")
        if not isinstance(label, str):
            return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description":
                         "trim(): Argument #1 ($string) must be of type string, array given"}
        name = str(fields.get("FIELD_NAME") or "").upper()
        if not name:
            return self.refuse("", "The 'FIELD_NAME' field is not found.")
        if not fields.get("USER_TYPE_ID"):
            return self.refuse("", "The 'USER_TYPE_ID' field is not found.")
        name = name if name.startswith("UF_CRM_") else "UF_CRM_" + name.removeprefix("UF_")
        problems = []
        if len(name) > UF_CODE_MAX:
            problems.append(f"Имя поля слишком длинное (больше {UF_CODE_MAX}-ти символов).")
        if not re.fullmatch(r"[0-9A-Z_]+", name):
            problems.append("Имя поля содержит недопустимые символы. "
                            "Допустимыми являются: A-Z, 0-9 и _.")
        if name in self.fields:
            problems.append(f"Пользовательское поле {name} уже существует.")
        if problems:
            return self.refuse("ERROR_CORE", "\n".join(problems))
        self.fields[name] = {**fields, "FIELD_NAME": name}
        return self.ok(len(self.fields))

    def _crm_get(self, store, p):
        """crm.contact.get / crm.deal.get: an id that is not a positive integer, or none."""
        ident = str(p.get("id") or p.get("ID") or "")
        if not ident.isdigit() or int(ident) <= 0:
            return self.refuse("", "ID is not defined or invalid.")
        row = store.get(int(ident))
        return self.ok(row) if row is not None else self.refuse("", "Not found")

    def m_crm_contact_get(self, p):
        return self._crm_get(self.contacts, p)

    def m_crm_deal_get(self, p):
        return self._crm_get(self.deals, p)

    def m_crm_deal_productrows_get(self, p):
        # crm.deal.productrows.get: `id` required; an unknown deal is "Not found".
        if not str(p.get("id") or "").isdigit():
            return 400, {"error": "", "error_description": "The parameter id is invalid or not defined."}
        deal = self.deals.get(int(p["id"]))
        if deal is None:
            return 400, {"error": "", "error_description": "Not found"}
        return self.ok(self.product_rows.get(int(p["id"]), []))

    def m_catalog_product_get(self, p):
        # catalog.product.get needs the `catalog` scope; an unknown id is "product does not exist."
        if "catalog" not in self.scopes:
            return 401, {"error": "insufficient_scope", "error_description": ""}
        product = self.products.get(int(p.get("id") or 0))
        if product is None:
            return 400, {"error": "", "error_description": "product does not exist."}
        return self.ok({"product": product})

    def m_crm_contact_update(self, p):
        if not isinstance(p.get("fields"), dict):
            return self.refuse("", "Parameter 'fields' must be array.")
        ident = str(p.get("id") or "")
        contact = self.contacts.get(int(ident)) if ident.isdigit() else None
        if contact is None:
            return 400, {"error": "", "error_description": "Contact is not found"}
        contact.update(self._known(p["fields"]))
        return self.ok(True)

    def _known(self, fields: dict) -> dict:
        """The server ignores fields it does not know (protocol §7.1), user fields included.
        Until a test creates user fields (an install), every UF_CRM_ field counts as known,
        so tests need not install first."""
        if not self.fields:
            return fields
        return {k: v for k, v in fields.items() if not k.startswith("UF_CRM_") or k in self.fields}

    def m_crm_timeline_logmessage_add(self, p):
        fields = p.get("fields") or {}
        required = ("entityTypeId", "entityId", "title", "text", "iconCode")
        if any(not fields.get(k) for k in required):
            return self.refuse("100", "Required fields are missing")
        self._next_id += 1
        return self.ok({"logMessage": {"id": self._next_id, **fields}})

    def m_crm_timeline_comment_add(self, p):
        fields = p.get("fields") or {}
        if not fields.get("ENTITY_ID") or not fields.get("ENTITY_TYPE"):
            return self.refuse("100", "Required fields are missing")
        if not str(fields.get("COMMENT") or "").strip():
            return self.refuse("INVALID_ARG_VALUE", "Empty comment")
        self._next_id += 1
        return self.ok(self._next_id)

    def m_event_offline_get(self, p):
        """clear=0 reserves the records under a process_id until event.offline.clear;
        asking again with that process_id hands the unconfirmed ones back."""
        limit = int(p.get("limit") or 50)
        pid = p.get("process_id") or f"proc{len(self._reserved) + 1}"
        taken = list(self._reserved.get(pid, []))
        while self.offline_queue and len(taken) < limit:
            taken.append(self.offline_queue.pop(0))
        if str(p.get("clear", "1")) == "0":
            self._reserved[pid] = taken
        return self.ok({"process_id": pid if str(p.get("clear", "1")) == "0" else None,
                        "events": taken})

    def m_event_offline_clear(self, p):
        if not p.get("process_id"):
            return 400, {"error": "", "error_description": "Process id is empty"}
        ids = {str(i) for i in p.get("id") or []}
        kept = [r for r in self._reserved.get(p["process_id"], []) if ids and r["ID"] not in ids]
        self._reserved[p["process_id"]] = kept
        return self.ok(True)

    def m_crm_duplicate_findbycomm(self, p):
        if p.get("type") not in ("PHONE", "EMAIL"):
            return 400, {"error": "Communication type is not defined",
                         "error_description": "Parameter 'type' is required."}
        if not p.get("values") or len(p["values"]) > 20:
            return 400, {"error": "Communication values is not defined",
                         "error_description": "Parameter 'values' is required."}
        wanted = {re.sub(r"\D", "", v)[-10:] for v in p["values"]}
        found = sorted(int(cid) for cid, c in self.contacts.items()
                       if any(re.sub(r"\D", "", ph.get("VALUE", ""))[-10:] in wanted
                              for ph in c.get("PHONE") or []))
        return self.ok({"CONTACT": found} if found else [])  # PHP: an empty map is []

    def m_bizproc_event_send(self, p):
        if not p.get("EVENT_TOKEN"):
            return self.refuse("ACCESS_DENIED", "Access denied!", 403)
        return self.ok(True)

    def _notify(self, p, kind):
        user = str(p.get("USER_ID") or "")
        if not user.isdigit() or int(user) <= 0:
            return self.refuse("USER_ID_EMPTY", "User ID can't be empty")
        if not str(p.get("MESSAGE") or "").strip():
            return self.refuse("MESSAGE_EMPTY", "Message can't be empty")
        if len(json.dumps(p.get("ATTACH") or "")) > 60_000:
            return self.refuse("ATTACH_OVERSIZE",
                               "You have exceeded the maximum allowable size of attach")
        if p.get("TAG"):  # a new notification with the same tag removes the older ones
            self.notifications = [n for n in self.notifications if n.get("TAG") != p["TAG"]]
        self._next_id += 1
        self.notifications.append({**p, "kind": kind, "id": self._next_id,
                                   "MESSAGE": str(p["MESSAGE"]).strip()})
        return self.ok(self._next_id)

    def m_im_notify_personal_add(self, p):
        return self._notify(p, "personal")

    def m_im_notify_system_add(self, p):
        return self._notify(p, "system")

    def m_im_message_add(self, p):
        dialog = str(p.get("DIALOG_ID") or "")
        if not dialog or (dialog.isdigit() and int(dialog) <= 0):
            return self.refuse("USER_ID_EMPTY", "User ID can't be empty")
        if not str(p.get("MESSAGE") or "").strip() and not p.get("ATTACH"):
            return self.refuse("MESSAGE_EMPTY", "Message can't be empty")
        self._next_id += 1
        self.messages.append({**p, "id": self._next_id})
        return self.ok(self._next_id)

    # -- helpers for tests ---------------------------------------------------------------------
    def queue_offline(self, event: str, entity_id: int):
        """What the portal records while we are down: one record per event and object (the
        queue keeps the latest change, not each one)."""
        if event not in self.offline_bound:
            return
        self.offline_queue = [r for r in self.offline_queue
                              if (r["EVENT_NAME"], r["EVENT_DATA"]["FIELDS"]["ID"]) != (event, entity_id)]
        self._next_id += 1
        self.offline_queue.append({"ID": str(self._next_id), "TIMESTAMP_X": "2026-03-01T12:00:00+03:00",
                                   "EVENT_NAME": event, "EVENT_DATA": {"FIELDS": {"ID": entity_id}},
                                   "EVENT_ADDITIONAL": {}, "MESSAGE_ID": f"m{self._next_id}"})

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


def _handler_ok(url) -> bool:
    """HandlerHelper::checkCallback: http(s), and a host with a dot (no localhost)."""
    parts = urlparse(str(url or ""))
    return parts.scheme in ("http", "https") and "." in (parts.hostname or "")


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
