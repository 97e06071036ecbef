"""Install-time setup, idempotent: activities, robots, event handlers, contact fields.

An app update wipes every registration (protocol §1.6), so this runs on every install
and from `flask --app api b24 register`: list what exists, add what is missing, update
the rest. Two batch requests in all: one to read, one to write.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from activities.b24client import B24Client
from activities.contacts import USER_FIELDS
from activities.definitions import ACTIVITIES, ROBOT_SUFFIX, descriptor
from activities.portals import B24Settings

EVENTS = ("ONAPPINSTALL", "ONAPPUNINSTALL", "ONCRMCONTACTUPDATE", "ONCRMDEALUPDATE")
# Also queued in the portal while we are down (no handler; scheduler.offline drains them).
OFFLINE_EVENTS = ("ONCRMCONTACTUPDATE", "ONCRMCONTACTDELETE")
# CRM card tabs: (placement code, our handler path, title ru/en).
PLACEMENTS = (("CRM_CONTACT_DETAIL_TAB", "/b24/placements/contact", ("Бонусы", "Bonuses")),
              ("CRM_DEAL_DETAIL_TAB", "/b24/placements/deal", ("Бонусы", "Bonuses")))
# Errors that mean "it is already there": success for an idempotent install.
ALREADY = ("already binded", "already installed", "ERROR_ACTIVITY_ALREADY_INSTALLED")


@dataclass
class Report:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    bound: list[str] = field(default_factory=list)
    placements: list[str] = field(default_factory=list)
    fields_created: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    user_id: int | None = None
    offline: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.bound)} events "
                f"bound, {len(self.placements)} tabs bound, {len(self.fields_created)} contact "
                f"fields created, {len(self.errors)} errors"
                + (f", {len(self.offline)} offline event queues bound" if self.offline else ""))


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
                writes[f"upd_{code}"] = (f"bizproc.{kind}.update", {"CODE": code, "FIELDS": fields})
                report.updated.append(code)
            else:
                writes[f"add_{code}"] = (f"bizproc.{kind}.add", {"CODE": code, **fields})
                report.added.append(code)
    return writes


def _event_writes(seen: dict, settings: B24Settings, report: Report) -> dict:
    handler = settings.handler_url("/b24/events")
    writes = {}
    for event in EVENTS:
        if (event, handler) not in seen["events"]:
            writes[f"bind_{event}"] = ("event.bind", {"event": event, "handler": handler})
            report.bound.append(event)
    for event in OFFLINE_EVENTS:
        if (event, "offline") not in seen["events"]:
            writes[f"offline_{event}"] = ("event.bind", {"event": event, "event_type": "offline"})
            report.offline.append(event)
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
    return writes


def _field_writes(seen: dict, report: Report) -> dict:
    writes = {}
    for name, type_, (ru, en) in USER_FIELDS:
        if name not in seen["fields"]:
            writes[f"uf_{name}"] = ("crm.contact.userfield.add", {"fields": {
                "FIELD_NAME": name, "USER_TYPE_ID": type_, "LABEL": {"ru": ru, "en": en},
                "EDIT_FORM_LABEL": {"ru": ru, "en": en}, "LIST_COLUMN_LABEL": {"ru": ru, "en": en},
                "SHOW_FILTER": "Y", "EDIT_IN_LIST": "N"}})
            report.fields_created.append(f"UF_CRM_{name}")
    return writes
