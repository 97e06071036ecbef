"""Earning rules per product and product section of a deal's rows.

A rule names a `product_id` (PRODUCT_ID of crm.deal.productrows.get) or a `section_id`
(the catalog section, iblockSectionId of catalog.product.get) and says:
- `percent`: bonuses earned on that row (instead of the tier's percent), or
- `exclude`: no bonuses on it at all;
- `bonus_share`: at most this percent of the row may be paid with bonuses.
A product rule wins over a section rule; a row no rule names earns the tier's percent.
The accrual keeps every line's reason (`explain`) so the result, the entry's comment
and the timeline say which rule gave how much.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api import documents
from api.ledger.errors import InvalidInput
from api.ledger.fields import Percent
from api.ledger.money import MoneyError, format_kop, to_decimal
from api.models import Portal, ProductRuleSet

RULES_MAX = 500
ROWS_MAX = 500
NAME_MAX = 100
TIER = "tier"


class RuleSchema(Schema):
    product_id = fields.Integer(strict=True, validate=validate.Range(1, 2**31))
    section_id = fields.Integer(strict=True, validate=validate.Range(1, 2**31))
    label = fields.String(validate=validate.Length(max=NAME_MAX))
    # Percent: 0-100, two decimals, a string in the OpenAPI document (fields.Decimal's
    # Range put "100.00" where the document needs a number: an invalid schema).
    percent = Percent(allow_none=True)
    exclude = fields.Boolean(truthy={True}, falsy={False}, load_default=False)
    bonus_share = Percent(allow_none=True)

    @validates_schema
    def _one_target(self, data, **kw):
        if ("product_id" in data) == ("section_id" in data):
            raise ValidationError("Нужен ровно один из product_id и section_id.", "product_id")
        if data.get("exclude") and data.get("percent") is not None:
            raise ValidationError("Исключённый товар не начисляет процент.", "percent")


class RuleSetSchema(Schema):
    rules = fields.List(fields.Nested(RuleSchema), required=True,
                        validate=validate.Length(max=RULES_MAX))


SCHEMA = RuleSetSchema()


@dataclass(frozen=True)
class Line:
    """One product row: what it cost and what the rules make of it."""

    row_id: int
    product_id: int
    name: str
    amount_kop: int
    rule: str  # "product:450", "section:12" or "tier"
    percent: Decimal | None  # None: the tier's percent, decided in the accrual's lock
    bonus_share: Decimal | None  # None: the program's maximum share


def load(portal: Portal) -> list[dict]:
    row = ProductRuleSet.get_or_none(ProductRuleSet.portal == portal)
    return json.loads(row.data)["rules"] if row else []


def save(portal: Portal, document, actor: str) -> list[dict]:
    documents.check_keys(document, {"rules": None})
    valid = documents.validated(SCHEMA, document)
    rules = [{k: (str(v) if isinstance(v, Decimal) else v) for k, v in rule.items()}
             for rule in valid["rules"]]
    documents.upsert(ProductRuleSet, portal, {"rules": rules}, actor)
    return rules


def needs_sections(rules: list[dict]) -> bool:
    return any("section_id" in rule for rule in rules)


def row_amount_kop(row: dict, index: int) -> int:
    """PRICE (per unit, after discounts, taxes in) × QUANTITY, to the kopeck, exactly."""
    try:
        price, quantity = to_decimal(row.get("PRICE")), to_decimal(row.get("QUANTITY"))
    except MoneyError:
        raise InvalidInput({f"rows.{index}": "PRICE и QUANTITY товарной позиции не числа"}) from None
    kop = (price * quantity * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if kop < 0:
        raise InvalidInput({f"rows.{index}": "Отрицательная сумма позиции"})
    return int(kop)


def lines(rows: list[dict], rules: list[dict], sections: dict[int, int]) -> list[Line]:
    """Apply the rules to the deal's rows; `sections` maps product id → its section."""
    if len(rows) > ROWS_MAX:
        raise InvalidInput({"rows": f"Не больше {ROWS_MAX} товарных позиций"})
    by_product = {r["product_id"]: r for r in rules if "product_id" in r}
    by_section = {r["section_id"]: r for r in rules if "section_id" in r}
    out = []
    for i, row in enumerate(rows):
        product = int(row.get("PRODUCT_ID") or 0)
        rule, name = by_product.get(product), f"product:{product}"
        if rule is None and sections.get(product) in by_section:
            rule, name = by_section[sections[product]], f"section:{sections[product]}"
        percent = None
        if rule is not None:
            percent = Decimal(0) if rule.get("exclude") else _decimal(rule.get("percent"))
        share = _decimal(rule.get("bonus_share")) if rule else None
        out.append(Line(int(row.get("ID") or i), product, str(row.get("PRODUCT_NAME") or "")[:NAME_MAX],
                        row_amount_kop(row, i), name if rule else TIER, percent, share))
    return out


def _decimal(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def exact_bonus(lines_: list[Line], tier_percent: Decimal) -> Decimal:
    """Σ row × percent / 100 in kopecks, unrounded: the accrual rounds the total once."""
    return sum((Decimal(line.amount_kop) * (tier_percent if line.percent is None else line.percent)
                / 100 for line in lines_), Decimal(0))


def explain(lines_: list[Line], tier_percent: Decimal) -> list[dict]:
    """Per line: the rule, its percent and the (unrounded, to the kopeck) bonus it gave."""
    out = []
    for line in lines_:
        percent = tier_percent if line.percent is None else line.percent
        bonus = (Decimal(line.amount_kop) * percent / 100).quantize(Decimal(1))
        out.append({"row_id": line.row_id, "product_id": line.product_id, "name": line.name,
                    "amount_kop": line.amount_kop, "rule": line.rule, "percent": str(percent),
                    "bonus_kop": int(bonus)})
    return out


def summary(explained: list[dict]) -> str:
    """One line per rule for the entry's comment and the timeline."""
    parts = []
    for item in explained:
        why = {"tier": "по уровню"}.get(item["rule"], "правило " + item["rule"].replace(
            "product:", "товар ").replace("section:", "раздел "))
        parts.append(f"{item['name'] or item['product_id']}: {format_kop(item['amount_kop'])} × "
                     f"{item['percent']} % ({why}) = {format_kop(item['bonus_kop'])}")
    return "; ".join(parts)[:1000]


def payable_kop(lines_: list[Line], max_share_percent: Decimal) -> int:
    """The most of this order bonuses may pay: each row at its share, else the program's."""
    total = sum((Decimal(line.amount_kop) * (max_share_percent if line.bonus_share is None
                                              else line.bonus_share) / 100 for line in lines_),
                Decimal(0))
    return int(total.to_integral_value(rounding="ROUND_FLOOR"))


def accrual(lines_: list[Line], tier_percent: Decimal, purchase_kop: int, rules):
    """For the ledger's accrual, inside its lock: (bonus_kop, effective percent, extra
    result fields with each line's reason). The total is rounded once, as the tier's is."""
    from api.ledger.money import ROUNDING

    if sum(line.amount_kop for line in lines_) != purchase_kop:
        raise InvalidInput({"amount": "Сумма покупки не равна сумме товарных позиций"})
    step = rules.rounding_step_kop
    exact = exact_bonus(lines_, tier_percent) / step
    bonus = int(exact.to_integral_value(rounding=ROUNDING[rules.rounding_mode])) * step
    percent = (Decimal(bonus) * 100 / purchase_kop).quantize(Decimal("0.01")) if purchase_kop \
        else Decimal(0)
    explained = explain(lines_, tier_percent)
    return bonus, percent, {"lines": explained, "explanation": summary(explained)}
