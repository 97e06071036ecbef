"""Birthday run benchmark: 1,000,000 cards on SQLite, one day's selection and enqueueing.

Prints the seconds and the peak memory (RSS) of the run itself, beside the targets
(under 10 s, under 300 MB). Not a test: `python bench/birthdays.py [--cards N]`.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import date, datetime, timedelta

# The root, in place of bench/ itself: bench/http.py would hide the stdlib's http.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from api.db import connect, db, use  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Notification, Outbox, Portal  # noqa: E402
from scheduler import birthdays  # noqa: E402

DAY = date(2027, 5, 17)
CHUNK = 50_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(path: str, portal_id: int, count: int) -> None:
    """Cards straight through sqlite3: the setup is not what is measured."""
    rng = random.Random(7)
    start = date(1950, 1, 1)
    con = sqlite3.connect(path)
    now = datetime(2027, 1, 1).isoformat(" ")
    for base in range(0, count, CHUNK):
        rows = []
        for i in range(base, min(base + CHUNK, count)):
            born = start + timedelta(days=rng.randrange(20_000))
            rows.append((portal_id, f"7916{i:07d}", i + 1, "Фамилия", f"Имя{i}", "Врач",
                         f"c{i}@example.ru" if i % 10 else None, born.isoformat(),
                         born.month * 100 + born.day, 7 + i % 40, "active", "Базовый", 0, 0,
                         f"фамилия имя{i}", now, now))
        con.executemany(
            "INSERT INTO card (portal_id, number, contact_id, last_name, first_name, client_category,"
            " email, birthdate, birthday_md, manager_id, status, tier, balance_kop, purchases_kop,"
            " search_text, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
        print(f"  filled {min(base + CHUNK, count):,} of {count:,} cards", file=sys.stderr)
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=1_000_000)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="bench-birthdays-"), "bench.sqlite3")
    use(connect(f"sqlite:///{path}"))
    db.connect()
    migrate()
    portal = Portal.create(member_id="bench", domain="bench.bitrix24.ru", status="active",
                           client_endpoint="https://bench.bitrix24.ru/rest/", access_token="t")
    db.close()
    fill(path, portal.id, args.cards)
    db.connect()
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    plan = birthdays.run(portal, DAY, now=datetime(2027, 5, 17, 6))
    seconds = time.perf_counter() - started
    notices, outbox = Notification.select().count(), Outbox.select().count()
    rss = peak_rss_mb()
    print(f"birthdays on SQLite, {args.cards:,} cards, {DAY}: {seconds:.2f} s, "
          f"{len(plan.lines):,} actions, {notices:,} notifications and {outbox:,} outbox rows "
          f"written; peak RSS {rss:.0f} MB (before the run {rss_before:.0f} MB)")
    print(f"verdict: time {'OK' if seconds < 10 else 'FAIL'} (target < 10 s), "
          f"memory {'OK' if rss < 300 else 'FAIL'} (target < 300 MB)")


if __name__ == "__main__":
    main()
