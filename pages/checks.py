"""Are the app's registrations in place on the portal? One batch request reads them all;
it also proves the stored app tokens work."""
from __future__ import annotations

from dataclasses import dataclass, field

from activities.b24client import B24Client, B24Error
from activities.contacts import USER_FIELDS
from activities.definitions import ACTIVITIES, ROBOT_SUFFIX
from activities.portals import B24Settings
from activities.registration import EVENTS, PLACEMENTS

# Widgets the app binds: the CRM contact and deal tabs.
EXPECTED_PLACEMENTS: tuple[str, ...] = tuple(code for code, _, _ in PLACEMENTS)


@dataclass
class Check:
    label: str
    expected: list[str]
    present: list[str]
    error: str | None = None
    extra: list[str] = field(default_factory=list)  # present but not expected (shown only)

    @property
    def missing(self) -> list[str]:
        return [name for name in self.expected if name not in self.present]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing


def registrations(client: B24Client, settings: B24Settings) -> list[Check]:
    """Raises B24Error when the portal can't be read at all (tokens, network)."""
    reads = {"activities": ("bizproc.activity.list", {}), "robots": ("bizproc.robot.list", {}),
             "events": ("event.get", {}), "placements": ("placement.get", {})}
    for name, _, _ in USER_FIELDS:
        reads[f"uf_{name}"] = ("crm.contact.userfield.list",
                               {"filter": {"FIELD_NAME": f"UF_CRM_{name}"}})
    result = client.batch(reads)

    def read(key, convert):
        try:
            return convert(result.result(key) or []), None
        except (B24Error, KeyError) as exc:
            return [], str(exc)

    handler = settings.handler_url("/b24/events")
    checks = []
    for label, key, expected in (
            ("Действия БП", "activities", [a.code for a in ACTIVITIES]),
            ("Роботы", "robots", [a.code + ROBOT_SUFFIX for a in ACTIVITIES if a.robot])):
        present, error = read(key, lambda rows: [str(r) for r in rows])
        checks.append(Check(label, expected, present, error))
    present, error = read("events", lambda rows: [
        str(e.get("event", "")).upper() for e in rows if e.get("handler") == handler])
    checks.append(Check("События", list(EVENTS), present, error))
    present, error = read("placements", lambda rows: [str(p.get("placement")) for p in rows])
    checks.append(Check("Встройки", list(EXPECTED_PLACEMENTS), present, error,
                        extra=[p for p in present if p not in EXPECTED_PLACEMENTS]))
    fields = [f"UF_CRM_{name}" for name, _, _ in USER_FIELDS]
    found = [f for f, (name, _, _) in zip(fields, USER_FIELDS) if _has(result, f"uf_{name}")]
    checks.append(Check("Поля контакта", fields, found))
    return checks


def _has(result, key: str) -> bool:
    return key in result.results and bool(result.results[key])
