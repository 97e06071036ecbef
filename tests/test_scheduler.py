"""The daily runs with an injected clock: birthdays (29 February, time zones, every
path, exactly once), expiry and its warnings, the daily due check, the lock, the CLI."""
from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta

import pytest

from api.db import db
from api.ledger import cards, operations, rules
from api.models import Card, Contact, DailyRun, Entry, Notification, Outbox, Portal
from api.ledger.idempotency import system
from notifications.followup import notice_key
from scheduler import birthdays, daily, expiry
from scheduler.lock import SchedulerLease

NINE = time(9, 0)


@pytest.fixture
def portal_b24(installed):
    return installed


def card_born(portal, birthdate, phone="9161234567", email="anna@example.ru", contact=42,
              manager=7):
    card, _ = cards.create_card(portal, {"phone": phone, "last_name": "Петрова", "first_name": "Анна",
                                         "client_category": "Врач", "contact_id": contact,
                                         "email": email, "birthdate": birthdate,
                                         "manager_id": manager}, actor="t")
    return card


def templates():
    return sorted(n.template for n in Notification.select())


def test_day_before_the_manager_on_the_day_the_client_and_a_bonus(portal_b24):
    rules.save(portal_b24, {"birthday_bonus": "500"}, actor="t")
    card = card_born(portal_b24, date(1990, 5, 17))
    birthdays.run(portal_b24, date(2027, 5, 16), now=datetime(2027, 5, 16, 6))
    assert templates() == ["birthday_manager"]
    assert Outbox.select().count() == 1  # the chat notice, on its own key
    birthdays.run(portal_b24, date(2027, 5, 17), now=datetime(2027, 5, 17, 6))
    assert templates() == ["birthday_email", "birthday_manager"]
    assert Card.get_by_id(card.id).balance_kop == 50_000
    assert Entry.get(Entry.kind == "birthday").operation.key == f"birthday:{card.id}:2027"


def test_reruns_and_racing_runs_write_nothing_twice(portal_b24):
    rules.save(portal_b24, {"birthday_bonus": "500"}, actor="t")
    card_born(portal_b24, date(1990, 5, 17))
    day, now = date(2027, 5, 17), datetime(2027, 5, 17, 6)
    errors = []

    def race():
        try:
            birthdays.run(portal_b24, day, now=now)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=race) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    birthdays.run(portal_b24, day, now=now)
    assert errors == []
    assert Entry.select().where(Entry.kind == "birthday").count() == 1
    assert templates() == ["birthday_email"]


def test_29_february_is_kept_on_28_february_in_other_years(portal_b24):
    card_born(portal_b24, date(2000, 2, 29))
    birthdays.run(portal_b24, date(2027, 2, 27), now=datetime(2027, 2, 27, 6))
    assert templates() == ["birthday_manager"]  # tomorrow is the 28th of a common year
    birthdays.run(portal_b24, date(2027, 2, 28), now=datetime(2027, 2, 28, 6))
    assert templates() == ["birthday_email", "birthday_manager"]
    Notification.delete().execute()
    birthdays.run(portal_b24, date(2028, 2, 28), now=datetime(2028, 2, 28, 6))
    assert templates() == ["birthday_manager"]  # a leap year: the day itself is tomorrow


def test_no_card_tomorrow_asks_the_manager_for_one(portal_b24):
    Contact.create(portal=portal_b24, contact_id=77, first_name="Иван", last_name="Сидоров",
                   birthdate=date(1985, 5, 18), birthday_md=518, manager_id=9)
    card_born(portal_b24, date(1990, 1, 1))  # a card holder with another birthday
    Contact.create(portal=portal_b24, contact_id=42, birthdate=date(1990, 5, 18),
                   birthday_md=518, manager_id=7)  # has a card (contact 42): not asked
    birthdays.run(portal_b24, date(2027, 5, 17), now=datetime(2027, 5, 17, 6))
    [row] = Notification.select().where(Notification.template == "birthday_no_card_manager")
    assert row.recipient == "9" and "Иван" in row.body


def test_missing_birthdate_is_asked_once_then_every_90_days(portal_b24):
    card_born(portal_b24, None)
    for day in (date(2027, 1, 1), date(2027, 1, 2), date(2027, 3, 31)):
        birthdays.run(portal_b24, day, now=datetime.combine(day, time(6)))
    assert templates() == ["no_birthdate_manager"]
    birthdays.run(portal_b24, date(2027, 4, 2), now=datetime(2027, 4, 2, 6))
    assert templates() == ["no_birthdate_manager", "no_birthdate_manager"]


def test_vladivostok_portal_runs_on_its_own_date_while_the_server_is_in_utc(portal_b24):
    Portal.update(timezone="Asia/Vladivostok").execute()
    card_born(portal_b24, date(1990, 3, 2))
    # 22:30 UTC on 1 March is 08:30 on 2 March in Vladivostok: not yet 09:00.
    assert daily.run_due(NINE, now=datetime(2027, 3, 1, 22, 30)) == []
    ran = daily.run_due(NINE, now=datetime(2027, 3, 1, 23, 30))  # 09:30 on 2 March there
    assert any("birthdays 2027-03-02" in line for line in ran)
    assert templates() == ["birthday_email"]
    assert {r.day for r in DailyRun.select()} == {date(2027, 3, 2)}


def test_a_missed_run_happens_at_start_the_same_day_and_past_days_are_not_replayed(portal_b24):
    card_born(portal_b24, date(1990, 3, 2))
    # Down from 1 March until 2 March 15:00 Moscow (12:00 UTC): only today's run happens.
    ran = daily.run_due(NINE, now=datetime(2027, 3, 2, 12))
    assert len(ran) == 2 and {r.day for r in DailyRun.select()} == {date(2027, 3, 2)}
    assert daily.run_due(NINE, now=datetime(2027, 3, 2, 13)) == []  # done for the day


def test_expiry_run_expires_and_warns_once_per_card_and_date(portal_b24):
    card = card_born(portal_b24, None, manager=None)
    t0 = datetime(2026, 1, 10, 12)
    operations.accrue(portal_b24, card.number, 1_000_000, key="a1", actor="t", now=t0)
    operations.accrue(portal_b24, card.number, 1_000_000, key="a2", actor="t",
                      now=t0 + timedelta(days=20))
    warn_day = t0 + timedelta(days=340)  # lot 1 expires within 30 days
    expiry.run(portal_b24, now=warn_day)
    expiry.run(portal_b24, now=warn_day + timedelta(days=1))
    assert templates() == ["expiry_warning_email", "expiry_warning_sms"]
    assert "300" in Notification.get(Notification.template == "expiry_warning_sms").body
    expiry.run(portal_b24, now=t0 + timedelta(days=366))
    assert Card.get_by_id(card.id).balance_kop == 30_000
    assert Entry.select().where(Entry.kind == "expiry").count() == 1
    expired = notice_key(system(f"expiry:{card.id}:2027-01-11"), "outbox")
    assert Outbox.select().where(Outbox.key == expired).count() == 1  # contact field


def test_one_scheduler_per_database(app):
    first, second = SchedulerLease(app.config["DATABASE_URL"], "a"), \
        SchedulerLease(app.config["DATABASE_URL"], "b")
    assert first.acquire() and not second.acquire()
    assert first.acquire()  # the holder keeps it
    first.release()
    assert second.acquire()
    second.release()


def test_a_lapsed_sqlite_lease_is_taken_over(app):
    from api.db import is_postgres

    if is_postgres():
        pytest.skip("PostgreSQL uses an advisory lock, freed when its session ends")
    now = datetime(2027, 1, 1, 12)
    assert SchedulerLease("x", "a").acquire(now)
    assert not SchedulerLease("x", "b").acquire(now + timedelta(seconds=30))
    assert SchedulerLease("x", "b").acquire(now + timedelta(minutes=5))


def test_dry_run_names_each_client_and_the_action(portal_b24):
    rules.save(portal_b24, {"birthday_bonus": "500"}, actor="t")
    card_born(portal_b24, date(1990, 3, 2), phone="9161234501", contact=1, manager=7)
    card_born(portal_b24, None, phone="9161234502", contact=2, manager=8)
    Contact.create(portal=portal_b24, contact_id=3, last_name="Сидоров", first_name="Иван",
                   birthday_md=302, manager_id=9)
    plan = birthdays.run(portal_b24, date(2027, 3, 1), dry_run=True)
    assert plan.lines == [
        "Петрова Анна (card 79161234501): manager call, manager 7 is told the birthday is tomorrow",
        "Сидоров Иван (contact 3, no card): manager call, manager 9 is asked to issue a card, "
        "birthday tomorrow",
        "Петрова Анна (card 79161234502): manager call, manager 8 is asked for the birthdate"]
    assert Notification.select().count() == 0


def test_cli_dry_run_prints_and_changes_nothing(runner, portal_b24, monkeypatch):
    from scheduler import cli

    monkeypatch.setattr(cli, "utcnow", lambda: datetime(2027, 3, 1, 9))  # the day itself
    rules.save(portal_b24, {"birthday_bonus": "500"}, actor="t")
    card_born(portal_b24, date(1990, 3, 1))
    result = runner.invoke(args=["scheduler", "run-once", "birthdays", "--date", "2027-03-01",
                                 "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would do 2 action(s)" in result.output
    assert "Петрова Анна (card 79161234567): birthday bonus 500" in result.output
    assert "Петрова Анна (card 79161234567): birthday e-mail to anna@example.ru" in result.output
    assert Notification.select().count() == 0 and Entry.select().count() == 0
    done = runner.invoke(args=["scheduler", "run-once", "birthdays", "--date", "2027-03-01"])
    assert "2 action(s) due; did 1 ledger entry(ies)" in done.output and Entry.select().where(Entry.kind == "birthday").count() == 1
