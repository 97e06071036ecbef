"""Reading a CRM contact the way the protocol says, and writing our fields back to it."""
from __future__ import annotations

from datetime import date, datetime, timezone

from api.ledger.money import format_kop
from api.ledger.phones import PhoneError, is_mobile, normalize
from api.models import Card

# Created at install (crm.contact.userfield.add prefixes UF_CRM_ itself). The server
# refuses a code over 20 characters with the prefix (protocol §7.2; newer cores allow 50,
# older ones 20, and we must install on both): UF_CRM_LOYALTY_BALANCE (22) never existed
# anywhere, so the balance is UF_CRM_LOYALTY_BAL (migration 0008_portal renames queued writes).
UF_PREFIX = "UF_CRM_"
UF_CODE_MAX = 20
USER_FIELDS = [
    ("LOYALTY_CARD", "string", ("Бонусная карта", "Loyalty card")),
    ("LOYALTY_BAL", "double", ("Бонусный баланс", "Bonus balance")),
    ("LOYALTY_TIER", "string", ("Уровень лояльности", "Loyalty tier")),
]
UF_CARD, UF_BALANCE, UF_TIER = (f"{UF_PREFIX}{name}" for name, _, _ in USER_FIELDS)


def birthdate(value) -> date | None:
    """BIRTHDATE is local midnight printed in the server's zone: to UTC, then the date."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date()


def best_phone(contact: dict) -> str | None:
    """A MOBILE-typed phone first, then any that is a valid mobile number, then any valid one."""
    phones = [p for p in contact.get("PHONE") or [] if isinstance(p, dict) and p.get("VALUE")]
    ranked = sorted(phones, key=lambda p: p.get("VALUE_TYPE") != "MOBILE")
    valid = []
    for item in ranked:
        try:
            valid.append((item, normalize(item["VALUE"])))
        except PhoneError:
            continue
    for item, digits in valid:
        if item.get("VALUE_TYPE") == "MOBILE" or is_mobile(digits):
            return digits
    return valid[0][1] if valid else (ranked[0]["VALUE"] if ranked else None)


def first_email(contact: dict) -> str | None:
    emails = [e.get("VALUE") for e in contact.get("EMAIL") or [] if isinstance(e, dict)]
    return next((e for e in emails if e), None)


def card_data(contact: dict, category_field: str | None) -> dict:
    """Our card fields from a crm.contact.get result."""
    manager = contact.get("ASSIGNED_BY_ID")
    return {
        "contact_id": int(contact["ID"]),
        "last_name": contact.get("LAST_NAME") or None,
        "first_name": contact.get("NAME") or None,
        "middle_name": contact.get("SECOND_NAME") or None,
        "phone": best_phone(contact),
        "email": first_email(contact),
        "birthdate": birthdate(contact.get("BIRTHDATE")),
        "manager_id": int(manager) if manager else None,
        "client_category": _text(contact.get(category_field)) if category_field else None,
    }


def _text(value) -> str | None:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v)
    return str(value).strip() or None if value not in (None, False) else None


def fields_update(card: Card) -> tuple[str, dict] | None:
    """crm.contact.update writing the card number, balance and tier onto the contact."""
    if not card.contact_id:
        return None
    return ("crm.contact.update", {"id": card.contact_id, "fields": {
        UF_CARD: card.number, UF_BALANCE: format_kop(card.balance_kop), UF_TIER: card.tier}})
