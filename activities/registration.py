"""Install-time setup, idempotent: activities, robots, event handlers, contact fields.

An app update wipes every registration (protocol §1.6), so this runs on every install
and from `flask --app api b24 register`: list what exists, add what is missing, update
the rest. Two batch requests in all: one to read, one to write.

The activities and robots are what the app is for; the events, tabs and contact fields
are optional. The install finishes (`BX24.installFinish()`) once the activities are
registered, because an unfinished install blocks everything (no events, no tabs, users
see "not configured"); a refused optional write is reported with the portal's text and
repaired later from the Health page or `flask --app api b24 register`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from activities.b24client import B24Client
from activities.contacts import USER_FIELDS
from activities.definitions import ACTIVITIES, ROBOT_SUFFIX, descriptor
from activities.portals import B24Settings

EVENTS = ("ONAPPINSTALL", "ONAPPUNINSTALL", "ONCRMCONTACTUPDATE")
# Also queued in the portal while we are down (no handler; scheduler.offline drains them).
OFFLINE_EVENTS = ("ONCRMCONTACTUPDATE", "ONCRMCONTACTDELETE")
# Bound by earlier versions and unbound now: ONCRMDEALUPDATE was stored and never read
# (won deals are accrued by the workflow's own loyalty_bonus_accrue action).
RETIRED_EVENTS = ("ONCRMDEALUPDATE",)
# CRM card tabs: (placement code, our handler path, title ru/en).
PLACEMENTS = (("CRM_CONTACT_DETAIL_TAB", "/b24/placements/contact", ("Бонусы", "Bonuses")),
              ("CRM_DEAL_DETAIL_TAB", "/b24/placements/deal", ("Бонусы", "Bonuses")))
# Errors that mean "it is already there": success for an idempotent install.
ALREADY = ("already binded", "already installed", "ERROR_ACTIVITY_ALREADY_INSTALLED")


# What each write key names, for people: (prefix, what it is in Russian).
WHAT = (("add_", "Действие"), ("upd_", "Действие"), ("bind_", "Событие"),
        ("unbind_", "Снятие события"), ("tab_", "Вкладка"), ("uf_", "Поле контакта"))
ESSENTIAL = ("add_", "upd_")  # activities and robots: without them the install is not done


@dataclass
class Report:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    bound: list[str] = field(default_factory=list)
    placements: list[str] = field(default_factory=list)
    fields_created: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # write key -> the portal's text
    user_id: int | None = None
    names: dict[str, str] = field(default_factory=dict)  # write key -> what it registers
    offline: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything was written."""
        return not self.errors

    @property
    def activities_ok(self) -> bool:
        """The activities and robots are in place: enough to finish the install."""
        return not any(key.startswith(ESSENTIAL) for key in self.errors)

    def failures(self) -> list[str]:
        """One line per refused write: what it was and what the portal said."""
        return [f"{self._label(key)}: {text}" for key, text in self.errors.items()]

    def _label(self, key: str) -> str:
        kind = next((label for prefix, label in WHAT if key.startswith(prefix)), "Запись")
        return f"{kind} {self.names.get(key, key)}"

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.bound)} events "
                f"bound, {len(self.placements)} tabs bound, {len(self.fields_created)} contact "
                f"fields created, {len(self.errors)} errors"
                + (f", {len(self.offline)} offline event queues bound" if self.offline else ""))

    def _drop(self, key: str) -> None:
        """A refused write is not counted as done."""
        name = self.names.get(key)
        for done in (self.added, self.updated, self.bound, self.placements, self.fields_created,
                     self.offline):
            if name in done:
                done.remove(name)


def register(client: B24Client, settings: B24Settings, user_id: int | None = None) -> Report:
    seen = _read_state(client)
    report = Report(user_id=user_id or seen["user_id"])
    writes = {**_activity_writes(seen, settings, report), **_event_writes(seen, settings, report),
              **_placement_writes(seen, settings, report), **_field_writes(seen, report)}
    result = client.batch(writes)
    for key, err in result.errors.items():
        text = f"{err.code} {err.description}".strip()
        if not any(marker.lower() in text.lower() for marker in ALREADY):
            report.errors[key] = text
            report._drop(key)
    return report


def _read_state(client: B24Client) -> dict:
    reads = {"me": ("user.current", {}), "activities": ("bizproc.activity.list", {}),
             "robots": ("bizproc.robot.list", {}), "events": ("event.get", {}),
             "placements": ("placement.get", {})}
    for name, _, _ in USER_FIELDS:
        reads[f"uf_{name}"] = ("crm.contact.userfield.list",
                               {"filter": {"FIELD_NAME": f"UF_CRM_{name}"}})
    result = client.batch(reads)
    events = result.result("events") or []
    return {
        "user_id": int(result.result("me")["ID"]),
        "activities": set(result.result("activities") or []),
        "robots": set(result.result("robots") or []),
        "events": {(e.get("event", "").upper(),
                    "offline" if str(e.get("offline")) == "1" else e.get("handler")) for e in events},
        "placements": {(p.get("placement"), p.get("handler"))
                       for p in result.result("placements") or []},
        "fields": {name for name, _, _ in USER_FIELDS if result.result(f"uf_{name}")},
    }


def _activity_writes(seen: dict, settings: B24Settings, report: Report) -> dict:
    writes = {}
    for activity in ACTIVITIES:
        for robot in (False, True) if activity.robot else (False,):
            code = activity.code + (ROBOT_SUFFIX if robot else "")
            kind = "robot" if robot else "activity"
            fields = descriptor(activity, settings.handler_url(f"/b24/activities/{code}"),
                                report.user_id, robot=robot)
            if code in seen["robots" if robot else "activities"]:
                key = f"upd_{code}"
                writes[key] = (f"bizproc.{kind}.update", {"CODE": code, "FIELDS": fields})
                report.updated.append(code)
            else:
                key = f"add_{code}"
                writes[key] = (f"bizproc.{kind}.add", {"CODE": code, **fields})
                report.added.append(code)
            report.names[key] = code
    return writes


def _event_writes(seen: dict, settings: B24Settings, report: Report) -> dict:
    handler = settings.handler_url("/b24/events")
    writes = {}
    for event in EVENTS:
        if (event, handler) not in seen["events"]:
            writes[f"bind_{event}"] = ("event.bind", {"event": event, "handler": handler})
            report.bound.append(event)
            report.names[f"bind_{event}"] = event
    for event in RETIRED_EVENTS:
        if (event, handler) in seen["events"]:
            writes[f"unbind_{event}"] = ("event.unbind", {"event": event, "handler": handler})
            report.names[f"unbind_{event}"] = event
    for event in OFFLINE_EVENTS:
        if (event, "offline") not in seen["events"]:
            writes[f"offline_{event}"] = ("event.bind", {"event": event, "event_type": "offline"})
            report.offline.append(f"{event} (offline)")
            report.names[f"offline_{event}"] = f"{event} (offline)"
    return writes


def _placement_writes(seen: dict, settings: B24Settings, report: Report) -> dict:
    writes = {}
    for code, path, (ru, en) in PLACEMENTS:
        handler = settings.handler_url(path)
        if (code, handler) not in seen["placements"]:
            writes[f"tab_{code}"] = ("placement.bind", {
                "PLACEMENT": code, "HANDLER": handler, "TITLE": ru,
                "LANG_ALL": {"ru": {"TITLE": ru}, "en": {"TITLE": en}}})
            report.placements.append(code)
            report.names[f"tab_{code}"] = code
    return writes


def _field_writes(seen: dict, report: Report) -> dict:
    writes = {}
    for name, type_, labels in USER_FIELDS:
        if name not in seen["fields"]:
            writes[f"uf_{name}"] = ("crm.contact.userfield.add", {"fields": field_descriptor(
                name, type_, labels)})
            report.fields_created.append(f"UF_CRM_{name}")
            report.names[f"uf_{name}"] = f"UF_CRM_{name}"
    return writes


def field_descriptor(name: str, type_: str, labels: tuple[str, str]) -> dict:
    """crm.contact.userfield.add `fields`: LABEL is a plain string (the server trim()s it,
    a map is a type error there); the per-language labels go in the three *_LABEL maps."""
    ru, en = labels
    per_language = {"ru": ru, "en": en}
    return {"FIELD_NAME": name, "USER_TYPE_ID": type_, "LABEL": ru,
            "EDIT_FORM_LABEL": per_language, "LIST_COLUMN_LABEL": per_language,
            "LIST_FILTER_LABEL": per_language, "SHOW_FILTER": "Y", "EDIT_IN_LIST": "N"}
