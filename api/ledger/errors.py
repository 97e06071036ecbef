"""Typed domain failures with stable machine codes.

The HTTP layer (api.errors) and the Bitrix24 layer each map these in one place;
nothing here knows about either.
"""
from __future__ import annotations

from api.ledger.money import format_kop


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, message: str, *, fields: dict | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.details = details or {}


class InvalidInput(LedgerError):
    code = "validation_error"

    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()), fields=fields)


class MissingFields(LedgerError):
    code = "missing_fields"

    def __init__(self, names: list[str]):
        super().__init__(
            "Не хватает данных для карты: " + ", ".join(names),
            fields={n: "Обязательное поле." for n in names},
        )
        self.names = names


class NotFound(LedgerError):
    code = "not_found"


class CardNotFound(NotFound):
    code = "card_not_found"

    def __init__(self, ident: str):
        super().__init__(f"Карта не найдена: {ident}")


class ReferenceNotFound(NotFound):
    code = "reference_not_found"

    def __init__(self, reference: str):
        super().__init__(f"По сделке/заказу {reference} нет начислений и списаний для отмены")


class Conflict(LedgerError):
    code = "conflict"


class CardExists(Conflict):
    code = "card_exists"

    def __init__(self, number: str, contact_id: int | None):
        holder = f"контакту {contact_id}" if contact_id else "другому клиенту"
        super().__init__(
            f"Карта {number} уже выдана {holder}",
            fields={"phone": "Карта с этим телефоном уже есть."},
            details={"card_number": number, "contact_id": contact_id},
        )


class CardBlocked(Conflict):
    code = "card_blocked"

    def __init__(self, number: str):
        super().__init__(f"Карта {number} заблокирована")


class AlreadyAccrued(Conflict):
    code = "already_accrued"

    def __init__(self, reference: str, entry_id: int):
        super().__init__(
            f"По сделке/заказу {reference} бонусы уже начислены",
            details={"reference": reference, "entry_id": entry_id},
        )


class AlreadyReversed(Conflict):
    code = "already_reversed"

    def __init__(self, reference: str):
        super().__init__(f"Операции по сделке/заказу {reference} уже отменены")


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"

    def __init__(self, key: str):
        super().__init__(
            "Этот Idempotency-Key уже использован для другого запроса",
            details={"idempotency_key": key},
        )


class RuleViolation(LedgerError):
    code = "rule_violation"


class InsufficientBalance(RuleViolation):
    code = "insufficient_balance"

    def __init__(self, available_kop: int):
        super().__init__(
            f"Недостаточно бонусов: доступно {format_kop(available_kop)}",
            fields={"amount": f"Доступно {format_kop(available_kop)}."},
            details={"available": format_kop(available_kop)},
        )
        self.available_kop = available_kop


class MaxShareExceeded(RuleViolation):
    code = "exceeds_max_share"

    def __init__(self, allowed_kop: int):
        super().__init__(
            f"Бонусами можно оплатить не больше {format_kop(allowed_kop)} этого заказа",
            fields={"amount": f"Не больше {format_kop(allowed_kop)}."},
            details={"allowed": format_kop(allowed_kop)},
        )
