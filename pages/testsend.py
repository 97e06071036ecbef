"""Where "send a test to me" goes: chat to the viewer, e-mail or SMS to what they typed."""
from __future__ import annotations

from marshmallow import ValidationError, validate

from api.ledger.phones import PhoneError, normalize

_EMAIL = validate.Email()


def recipient_for_test(channel: str, form, viewer) -> tuple[str | None, str | None]:
    """(recipient, None) or (None, the message shown beside the recipient field)."""
    if channel == "chat":
        return str(viewer.user_id), None
    typed = (form.get("recipient") or "").strip()[:254]
    if channel == "email":
        if not typed:
            return None, "Укажите e-mail для теста."
        try:
            return _EMAIL(typed), None
        except ValidationError:
            return None, "Неверный e-mail."
    try:
        return normalize(typed), None
    except PhoneError as exc:
        return None, str(exc)
