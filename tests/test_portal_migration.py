"""Migration 0008_portal keeps queued work and drops what nobody reads."""
from __future__ import annotations

import json

from api import migrations
from api.db import db
from api.models import B24Event, Outbox


def test_queued_writes_get_the_field_name_the_portal_accepts(installed):
    old = {"contact_fields": ["crm.contact.update", {"id": 42, "fields": {
        "UF_CRM_LOYALTY_CARD": "79161234567", "UF_CRM_LOYALTY_BALANCE": "300.00"}}]}
    waiting = Outbox.create(portal=installed, key="op:1", calls=json.dumps(old))
    sent = Outbox.create(portal=installed, key="op:2", calls=json.dumps(old), status="sent")
    B24Event.create(portal=installed, event="ONCRMDEALUPDATE", entity_id=5)
    B24Event.create(portal=installed, event="ONCRMCONTACTUPDATE", entity_id=42)
    with db.atomic():
        migrations._0008_portal()
    fields = json.loads(Outbox.get_by_id(waiting.id).calls)["contact_fields"][1]["fields"]
    assert fields == {"UF_CRM_LOYALTY_CARD": "79161234567", "UF_CRM_LOYALTY_BAL": "300.00"}
    assert Outbox.get_by_id(sent.id).calls == json.dumps(old)  # history stays as it was
    assert [e.event for e in B24Event.select()] == ["ONCRMCONTACTUPDATE"]
    assert "0008_portal" in [name for name, _ in migrations.MIGRATIONS]
