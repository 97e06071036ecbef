"""The program rules page: the REST API's validation, errors beside fields, nothing
written on a bad form, and a change that applies to the next operation only."""
from __future__ import annotations

import re
from decimal import Decimal

from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)
from test_pages import row_counts, moved, text

from api.ledger import cards, operations
from api.ledger import rules as rules_mod
from api.models import Entry, Operation, ProgramRules


def rules_form(**changes) -> dict:
    form = {"tiers-0-name": "Базовый", "tiers-0-threshold": "0.00", "tiers-0-percent": "3.00",
            "tiers-1-name": "Серебряный", "tiers-1-threshold": "50000.00",
            "tiers-1-percent": "5.00", "tiers-2-name": "Золотой",
            "tiers-2-threshold": "150000.00", "tiers-2-percent": "7.00",
            "rounding_mode": "down", "rounding_unit": "bonus", "bonus_lifetime_days": "365",
            "max_debit_share_percent": "100.00", "welcome_bonus": "0.00",
            "birthday_bonus": "0.00", "required_fields": ["last_name", "first_name", "phone"],
            "client_category_field": ""}
    form.update(changes)
    return form


def error_beside(page: str, name: str) -> str | None:
    found = re.search(rf'data-error-for="{re.escape(name)}">([^<]+)<', page)
    return found[1] if found else None


def test_the_form_shows_the_current_rules(admin):
    page = text(admin.get("/b24/app/rules"))
    assert 'name="tiers-1-name" id="f-tiers-1-name" value="Серебряный"' in page
    assert 'value="150000.00"' in page and 'name="tiers-3-name"' in page  # blank rows to add


def test_a_changed_percent_applies_to_the_next_accrual_only(admin, installed):
    card, _ = cards.create_card(installed, {"phone": "+79161234567", "last_name": "Петрова",
                                            "first_name": "Анна", "client_category": "Врач"},
                                actor="test")
    before = operations.accrue(installed, card.number, 100_000, key="a1", actor="test").result
    assert before["amount_kop"] == 3_000
    response = admin.post("/b24/app/rules", rules_form(**{"tiers-0-percent": "4.5"}))
    assert moved(response) and "m=saved" in moved(response)
    assert "Изменения действуют со следующей операции" in text(admin.follow(response))
    after = operations.accrue(installed, card.number, 100_000, key="a2", actor="test").result
    assert after["amount_kop"] == 4_500 and after["percent"] == "4.50"
    first = Entry.select().join(Operation).where(Operation.key == "a1").get()
    assert first.amount_kop == 3_000  # the past stays
    row = ProgramRules.get()
    assert row.updated_by == "b24:user_1 Ирина Админова"
    assert rules_mod.load(installed).required_fields == ("phone", "last_name", "first_name")


def test_bad_values_are_marked_beside_their_fields_and_nothing_is_written(admin):
    before = row_counts()
    response = admin.post("/b24/app/rules", rules_form(**{
        "tiers-1-percent": "101", "bonus_lifetime_days": "год", "welcome_bonus": "1e3",
        "max_debit_share_percent": "-5", "client_category_field": "UF CRM"}))
    assert response.status_code == 422
    page = text(response)
    assert error_beside(page, "tiers.1.percent") == "Процент должен быть от 0 до 100."
    assert error_beside(page, "bonus_lifetime_days") == "Целое число дней от 1 до 3650."
    assert error_beside(page, "welcome_bonus") == "Ожидается число вида 1500.50."
    assert error_beside(page, "max_debit_share_percent")
    assert error_beside(page, "client_category_field") == "Код поля: латиница, цифры, _."
    assert 'value="101"' in page and 'value="год"' in page  # what was typed comes back
    assert row_counts() == before


def test_tier_order_errors_show_above_the_tiers(admin):
    response = admin.post("/b24/app/rules", rules_form(**{"tiers-2-threshold": "100.00"}))
    assert response.status_code == 422
    assert error_beside(text(response), "tiers") == "Пороги уровней должны строго возрастать."
    assert ProgramRules.select().count() == 0


def test_a_blank_row_removes_a_tier_and_a_filled_one_adds_one(admin, installed):
    form = rules_form(**{"tiers-2-name": "", "tiers-2-threshold": "", "tiers-2-percent": "",
                         "tiers-4-name": "Платиновый", "tiers-4-threshold": "300000",
                         "tiers-4-percent": "10"})
    assert moved(admin.post("/b24/app/rules", form))
    names = [t["name"] for t in rules_mod.stored_document(installed)["tiers"]]
    assert names == ["Базовый", "Серебряный", "Платиновый"]


def test_no_tiers_at_all_is_an_error(admin):
    form = rules_form(**{f"tiers-{i}-{k}": "" for i in range(3)
                         for k in ("name", "threshold", "percent")})
    response = admin.post("/b24/app/rules", form)
    assert response.status_code == 422 and error_beside(text(response), "tiers")


def test_a_form_filled_before_another_admins_save_overwrites_nothing(admin, installed):
    """Two admins open the page; the second saves; the first's stale form must not put the
    old values back over the second's change without being told."""
    page = text(admin.get("/b24/app/rules"))
    version = re.search(r'name="version" value="([0-9a-f]+)"', page)[1]
    rules_mod.save(installed, {"welcome_bonus": "100.00"}, actor="b24:user_2 second admin")
    stale = admin.post("/b24/app/rules", rules_form(version=version,
                                                    **{"tiers-0-percent": "4.5"}))
    assert stale.status_code == 409
    body = text(stale)
    assert "другой администратор" in body and 'value="4.5"' in body  # typed values kept
    stored = rules_mod.load(installed)
    assert (stored.welcome_bonus_kop, stored.tiers[0].percent) == (10_000, Decimal("3.00"))
    fresh = re.search(r'name="version" value="([0-9a-f]+)"', body)[1]
    assert fresh != version
    again = admin.post("/b24/app/rules", rules_form(version=fresh, **{"tiers-0-percent": "4.5"}))
    assert moved(again) and "m=saved" in moved(again)  # now a decision, and it lands
    assert rules_mod.load(installed).tiers[0].percent == Decimal("4.50")
