"""A deal's product rows and their catalog sections, for the earning rules per product.

crm.deal.productrows.get (scope crm) gives PRODUCT_ID, PRICE (per unit, discounts and
taxes in) and QUANTITY; the section is not in a row, so when a rule names a section,
catalog.product.get (scope catalog) is asked for each product's iblockSectionId in one
batch. A product the catalog does not answer for (no catalog scope, a variation, a row
typed by hand with PRODUCT_ID 0) has no section: only product rules and the tier apply.
"""
from __future__ import annotations

from activities.runtime import RunContext
from api import product_rules

SECTIONS_BATCH_MAX = 50


def read_lines(ctx: RunContext, deal: int) -> list[product_rules.Line] | None:
    """The rows as rule lines, or None when the portal has no product rules or the deal
    has no rows (the accrual then uses the tier's percent on the amount)."""
    rules = product_rules.load(ctx.portal)
    if not rules:
        return None
    rows = ctx.client.call("crm.deal.productrows.get", {"id": deal})["result"] or []
    if not rows:
        return None
    sections = _sections(ctx, rows, rules) if product_rules.needs_sections(rules) else {}
    return product_rules.lines(rows, rules, sections)


def _sections(ctx: RunContext, rows: list[dict], rules: list[dict]) -> dict[int, int]:
    # A product with a rule of its own needs no section: its rule wins anyway.
    named = {rule["product_id"] for rule in rules if "product_id" in rule}
    ids = sorted({int(r.get("PRODUCT_ID") or 0) for r in rows} - {0} - named)[:SECTIONS_BATCH_MAX]
    if not ids:
        return {}
    answer = ctx.client.batch({f"p{i}": ("catalog.product.get", {"id": i}) for i in ids})
    sections = {}
    for i in ids:
        if answer.ok(f"p{i}"):
            product = (answer.results[f"p{i}"] or {}).get("product") or {}
            if product.get("iblockSectionId"):
                sections[i] = int(product["iblockSectionId"])
    return sections


def payable(ctx: RunContext, deal: int) -> int | None:
    """The most bonuses may pay for the deal's products, when a rule sets a share."""
    rules = product_rules.load(ctx.portal)
    if not any(rule.get("bonus_share") is not None for rule in rules):
        return None
    lines = read_lines(ctx, deal)
    if not lines:
        return None
    from api.ledger import rules as program

    return product_rules.payable_kop(lines, program.load(ctx.portal).max_debit_share_percent)
