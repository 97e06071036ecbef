"""What an activity handler gets (RunContext) and gives back (Reply)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from activities.b24client import B24Client
from activities.forms import FormError, document_entity, to_bool, to_decimal, to_int, to_user_id
from activities.portals import B24Settings, client_for
from api.ledger.money import MoneyError, parse_kop
from api.models import ActivityRun, Portal


@dataclass
class Reply:
    """Return values for bizproc.event.send, a log line, and the other writes to batch with it."""

    values: dict
    log: str
    calls: dict = field(default_factory=dict)

    @classmethod
    def ok(cls, log: str, **values) -> "Reply":
        return cls({"Success": "Y", "Error": "", **values}, log)

    @classmethod
    def error(cls, message: str, **values) -> "Reply":
        return cls({"Success": "N", "Error": message, **values}, f"Ошибка: {message}")


@dataclass
class RunContext:
    portal: Portal
    run: ActivityRun
    settings: B24Settings
    now: datetime
    session: object = None  # a requests.Session to use (tests count requests through it)

    @cached_property
    def props(self) -> dict:
        return json.loads(self.run.properties)

    @cached_property
    def document(self) -> tuple[str, int] | None:
        try:
            return document_entity(json.loads(self.run.document_id))
        except FormError:
            return None

    @cached_property
    def client(self) -> B24Client:
        return client_for(self.portal, self.settings, session=self.session)

    @property
    def key(self) -> str:
        """The ledger idempotency key: one per event_token, so a redelivery writes nothing."""
        return f"bp:{self.run.token_hash}"

    @property
    def actor(self) -> str:
        return f"b24:user_{self.run.user_id}" if self.run.user_id else "b24:workflow"

    def text(self, name: str) -> str | None:
        value = self.props.get(name)
        if isinstance(value, list):
            value = next((v for v in value if v), "")
        return str(value).strip() or None if value is not None else None

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        return None if value is None else to_int(value, name)

    def flag(self, name: str, default: bool) -> bool:
        return to_bool(self.text(name) or "", name, default=default)

    def user(self, name: str) -> int | None:
        value = self.text(name)
        return None if value is None else to_user_id(value, name)

    def kop(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return parse_kop(to_decimal(value, name))
        except MoneyError as exc:
            raise FormError(name, f"{name}: {exc}") from None

    def document_id_of(self, entity: str) -> int | None:
        return self.document[1] if self.document and self.document[0] == entity else None

