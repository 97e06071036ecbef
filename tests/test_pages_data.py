"""The «Данные» page: a CSV import checked first (nothing written), its report as CSV,
then applied once; the exports and the audit trail; admins only."""
from __future__ import annotations

import io

import pytest
from test_pages import _portal_settings, admin, b24p, frame_user  # noqa: F401 (fixtures)
from test_pages import MANAGER, allow, moved, row_counts, text

from api.models import AuditEntry, Card, Entry

CSV = ("Телефон;Фамилия;Имя;Категория;Баланс\r\n"
       "+7 916 111-11-11;Иванова;Мария;Врач;150\r\n"
       "+7 495 123-45-67;Сидоров;Олег;Врач;10\r\n").encode("cp1251")


@pytest.fixture(autouse=True)
def import_folder(app, tmp_path):
    app.config["IMPORT_FOLDER"] = str(tmp_path / "imports")
    return tmp_path / "imports"


def listing(b24p):
    """The page tests' fake portal answers crm.contact.list as test_sync's does."""
    from test_sync import ListingPortal

    b24p.m_crm_contact_list = ListingPortal.m_crm_contact_list.__get__(b24p)
    b24p.listing, b24p._row = None, ListingPortal._row.__get__(b24p)


def upload(admin, data=CSV, **form):
    return admin.post("/b24/app/data/import", {"file": (io.BytesIO(data), "clients.csv"), **form})


def test_a_dry_run_shows_what_would_happen_and_writes_nothing(admin, installed):
    before = row_counts()
    page = upload(admin)
    assert page.status_code == 200, text(page)
    body = text(page)
    assert "cp1251" in body and 'id="created">1<' in body and 'id="refused">1<' in body
    assert "Стационарный номер" in body
    assert row_counts() == before
    digest = body.split("/b24/app/data/import/")[1][:64]
    report = admin.get(f"/b24/app/data/import/{digest}/report.csv")
    lines = report.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0].startswith("line;phone;status") and len(lines) == 3
    assert row_counts() == before


def test_apply_is_confirmed_then_imports_once(admin, installed, monkeypatch):
    from pages import data

    monkeypatch.setattr(data, "PROGRESS_LINES", 1)
    body = text(upload(admin))
    digest = body.split("/b24/app/data/import/")[1][:64]
    confirm = admin.post(f"/b24/app/data/import/{digest}/apply", {"categories": ""})
    assert "Подтвердите действие" in text(confirm) and not Card.select().exists()
    done = admin.post(f"/b24/app/data/import/{digest}/apply", {"categories": "", "confirmed": "1"})
    assert done.status_code == 200 and "Импорт выполнен" in text(done)  # streamed as it goes
    assert "1 created" in text(done) and "2 строк обработано" in text(done)
    again = admin.post(f"/b24/app/data/import/{digest}/apply", {"categories": "", "confirmed": "1"})
    assert again.status_code == 404  # the file is gone once applied: it held personal data
    text(upload(admin))  # the same file uploaded and applied again changes nothing
    assert "0 created" in text(admin.post(f"/b24/app/data/import/{digest}/apply",
                                          {"categories": "", "confirmed": "1"}))
    card = Card.get(Card.number == "79161111111")
    assert card.balance_kop == 15000
    assert Entry.select().where(Entry.kind == "import").count() == 1
    imports = AuditEntry.select().where(AuditEntry.action == "data.import")
    assert imports.count() == 2 and imports.first().actor.startswith("b24:user_1")
    page = text(admin.get("/b24/app/data"))
    assert "data.import" in page


def test_a_made_up_digest_names_no_file(admin, installed):
    assert admin.get("/b24/app/data/import/../../etc/passwd/report.csv").status_code == 404
    assert admin.get("/b24/app/data/import/" + "0" * 64 + "/report.csv").status_code == 404


def test_exports_from_the_page(admin, installed):
    upload(admin)
    cards = admin.get("/b24/app/data/cards.csv").get_data(as_text=True)
    assert "card;status" in cards.splitlines()[0]
    moves = admin.get("/b24/app/data/movements.csv", start="2000-01-01", end="2100-01-01")
    assert moves.status_code == 200
    assert admin.get("/b24/app/data/movements.csv", start="x").status_code == 422
    assert admin.get("/b24/app/data/movements.csv", start="2026-01-01",
                     end="9999-12-31").status_code == 422


def test_only_admins_see_it(frame_user, installed):
    allow(installed, view_cards=True, adjust=True)
    frame_user.login(MANAGER)
    assert frame_user.get("/b24/app/data").status_code == 403
    response = frame_user.post("/b24/app/data/import", {"file": (io.BytesIO(CSV), "c.csv")})
    assert response.status_code == 403 and not Card.select().exists()


def test_reconcile_from_the_page_shows_the_repairs(admin, installed, b24p):
    from api.ledger import cards

    cards.create_card(installed, {"phone": "+79161234567", "last_name": "Петрова",
                                  "first_name": "Анна", "client_category": "Врач",
                                  "contact_id": 42}, actor="t")
    b24p.add_contact(42)
    listing(b24p)
    page = admin.post("/b24/app/data/reconcile", {})
    assert page.status_code == 200, text(page)
    assert "1 repaired" in text(page) and "контакт 42" in text(page)


def test_merge_by_hand_shows_both_cards_then_merges_once(admin, installed):
    from api.ledger import cards, operations

    a, _ = cards.create_card(installed, {"phone": "+79161111111", "last_name": "Иванова",
                                         "first_name": "Мария", "client_category": "Врач"},
                             actor="t")
    b, _ = cards.create_card(installed, {"phone": "+79162222222", "last_name": "Иванова",
                                         "first_name": "Мария", "client_category": "Врач"},
                             actor="t")
    operations.adjust(installed, a.number, 5000, key="k", actor="t", reason="старт")
    page = text(admin.get(f"/b24/app/clients/{a.number}"))
    assert 'id="merge-form"' in page and 'id="forget-form"' in page
    confirm = admin.post(f"/b24/app/data/cards/{a.number}/merge", {"into": "8 916 222-22-22"})
    body = text(confirm)
    assert "Подтвердите действие" in body and f"#{a.id} {a.number}" in body and f"#{b.id}" in body
    assert Card.get_by_id(a.id).status == "active"
    for _ in range(2):
        done = admin.post(f"/b24/app/data/cards/{a.number}/merge",
                          {"into": b.number, "confirmed": "1"})
        assert moved(done) and "m=merged" in moved(done)
    assert (Card.get_by_id(a.id).status, Card.get_by_id(b.id).balance_kop) == ("closed", 5000)
    assert Entry.select().where(Entry.kind == "transfer").count() == 2
    assert AuditEntry.select().where(AuditEntry.action == "card.merge").count() == 1


def test_forget_from_the_client_page(admin, installed):
    from api.ledger import cards

    card, _ = cards.create_card(installed, {"phone": "+79161111111", "last_name": "Иванова",
                                            "first_name": "Мария", "client_category": "Врач"},
                                actor="t")
    confirm = admin.post(f"/b24/app/data/cards/{card.number}/forget", {"reason": "Заявление 5"})
    assert "Подтвердите действие" in text(confirm)
    done = admin.post(f"/b24/app/data/cards/{card.number}/forget",
                      {"reason": "Заявление 5", "confirmed": "1"})
    assert moved(done) and "m=forgotten" in moved(done)
    forgotten = Card.get_by_id(card.id)
    assert forgotten.number.startswith("anon") and forgotten.last_name is None


def test_import_from_a_contact_field_on_the_page(admin, installed, b24p):
    from api.ledger import rules

    rules.save(installed, {"client_category_field": "UF_CRM_CATEGORY"}, "test")
    b24p.add_contact(42, UF_CRM_BALLY="70")
    listing(b24p)
    page = admin.post("/b24/app/data/import-crm", {"field": "UF_CRM_BALLY", "categories": "Врач"})
    assert page.status_code == 200, text(page)
    assert 'id="created">1<' in text(page) and not Card.select().exists()
    confirm = admin.post("/b24/app/data/import-crm/apply", {"field": "UF_CRM_BALLY",
                                                           "categories": "Врач"})
    assert "Подтвердите действие" in text(confirm)
    done = admin.post("/b24/app/data/import-crm/apply", {"field": "UF_CRM_BALLY",
                                                        "categories": "Врач", "confirmed": "1"})
    assert "m=imported" in moved(done)
    assert Card.get().balance_kop == 7000
    assert admin.post("/b24/app/data/import-crm", {"field": "bad code"}).status_code == 422
