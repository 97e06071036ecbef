"""The program's numbers page: time to compute it over 1,000,000 cards and 10,000,000
entries, on SQLite and on PostgreSQL. Target: under 1 s on each.

The data is written straight through the drivers (the setup is not what is measured),
with the rollups the ledger would have kept beside it. Not a test:
`python bench/kpis.py [--cards N] [--entries N] [--sqlite-only]`.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, datetime, timedelta

# The root, in place of bench/ itself: bench/http.py would hide the stdlib's http.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from api import kpis  # noqa: E402
from api.db import connect, db, use  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Portal  # noqa: E402

TODAY = date(2027, 5, 20)
DAYS = 365
CHUNK = 200_000
PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def say(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def generate(cards: int, entries: int):
    """Yield table name and row chunks: cards, entries, lots and the matching rollups."""
    rng = random.Random(11)
    tiers = ["Базовый"] * 6 + ["Серебряный"] * 3 + ["Золотой"]
    start = TODAY - timedelta(days=DAYS)
    card_rows = []
    for i in range(cards):
        made = (start + timedelta(days=rng.randrange(DAYS))).isoformat() + " 10:00:00"
        card_rows.append((1, f"79{i:09d}", i + 1, "active", rng.choice(tiers), 0, 0, "", made, made))
    yield "card", ("portal_id", "number", "contact_id", "status", "tier", "balance_kop",
                   "purchases_kop", "search_text", "created_at", "updated_at"), card_rows
    day_stats: dict = defaultdict(lambda: [0, 0, 0])
    live: dict = defaultdict(int)
    months: dict = defaultdict(int)
    for base in range(0, entries, CHUNK):
        rows, lots = [], []
        for i in range(base, min(base + entries, base + CHUNK, entries)):
            card = rng.randrange(cards) + 1
            day = start + timedelta(days=rng.randrange(DAYS))
            kind = "accrual" if i % 2 == 0 else "debit"
            amount = rng.randrange(100, 50_000) * (1 if kind == "accrual" else -1)
            rows.append((1, card, f"k{i}", kind, amount, 0, f"{day.isoformat()} 12:00:00", "bench"))
            stat = day_stats[(day, kind)]
            stat[0], stat[1] = stat[0] + 1, stat[1] + amount
            if kind == "accrual":
                stat[2] += amount * 30
                months[(card, day.replace(day=1))] += 1
                if i % 4 == 0:
                    expires = day + timedelta(days=365)
                    lots.append((card, i + 1, amount, amount // 2, f"{expires.isoformat()} 12:00:00"))
                    live[expires] += amount // 2
        yield "entry", ("portal_id", "card_id", "idempotency_key", "kind", "amount_kop",
                        "balance_after_kop", "created_at", "actor"), rows
        yield "lot", ("card_id", "entry_id", "amount_kop", "remaining_kop", "expires_at"), lots
        say(f"generated {min(base + CHUNK, entries):,} of {entries:,} entries")
    yield "dailystat", ("portal_id", "day", "kind", "entries", "amount_kop", "purchase_kop",
                        "bonus_orders", "bonus_order_kop"), [
        (1, d.isoformat(), k, v[0], v[1], v[2], 0, 0) for (d, k), v in day_stats.items()]
    yield "clientmonth", ("portal_id", "card_id", "month", "purchases"), [
        (1, c, m.isoformat(), n) for (c, m), n in months.items()]
    per_month: dict = defaultdict(lambda: [0, 0])
    for (_, month), n in months.items():
        per_month[month][0] += 1
        per_month[month][1] += int(n > 1)
    yield "monthstat", ("portal_id", "month", "active", "repeat"), [
        (1, m.isoformat(), a, r) for m, (a, r) in per_month.items()]
    yield "expiryday", ("portal_id", "day", "live_kop"), [
        (1, d.isoformat(), kop) for d, kop in live.items()]


def load_sqlite(path: str, cards: int, entries: int) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA synchronous=off")
    for table, columns, rows in generate(cards, entries):
        marks = ", ".join("?" * len(columns))
        con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        con.commit()
    con.execute("ANALYZE")
    con.close()


def load_postgres(cards: int, entries: int) -> None:
    raw = db.connection()
    with raw.cursor() as cur:
        for table, columns, rows in generate(cards, entries):
            buffer = io.StringIO("".join("\t".join(map(str, row)) + "\n" for row in rows))
            cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buffer)
        raw.commit()
        cur.execute("ANALYZE")
    raw.commit()


def measure(portal: Portal) -> dict[str, float]:
    """The page: this month beside the previous one, tiers, the weekly chart, expiring."""
    timings = {}
    this_month = kpis.month_bounds(TODAY)
    last_month = kpis.month_bounds(this_month[0] - timedelta(days=1))
    for name, work in (("this month", lambda: kpis.period(portal, *this_month)),
                       ("previous month", lambda: kpis.period(portal, *last_month)),
                       ("clients per tier", lambda: kpis.tiers(portal)),
                       ("weekly chart", lambda: kpis.weekly(portal, *this_month)),
                       ("expiring 90 days", lambda: kpis.expiring(
                           portal, now=datetime.combine(TODAY, datetime.min.time())))):
        started = time.perf_counter()
        work()
        timings[name] = time.perf_counter() - started
    return timings


def report(name: str, cards: int, entries: int, timings: dict[str, float]) -> None:
    total = sum(timings.values())
    parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in timings.items())
    print(f"{name:<10} {cards:,} cards, {entries:,} entries: page in {total * 1000:.0f} ms "
          f"({parts}) — target < 1000 ms: {'OK' if total < 1 else 'FAIL'}")


def run(url: str, name: str, cards: int, entries: int, loader) -> None:
    use(connect(url))
    db.connect()
    migrate()
    portal = Portal.create(member_id=f"bench-{name}", status="active")
    db.close()
    say(f"{name}: loading {cards:,} cards and {entries:,} entries")
    db.connect()
    loader(cards, entries)
    measure(portal)  # first pass warms the caches, as a page opened twice would
    report(name, cards, entries, measure(portal))
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="bench-kpis-"), "kpis.sqlite3")
    run(f"sqlite:///{path}", "sqlite", args.cards, args.entries,
        lambda c, e: load_sqlite(path, c, e))
    os.remove(path)
    if args.sqlite_only:
        return
    schema = f"bench_kpis_{os.getpid()}"
    try:
        admin = connect(PG_URL)
        admin.connect()
    except Exception as exc:  # no server: say so and stop
        print(f"postgresql skipped: not reachable at {PG_URL} ({type(exc).__name__})")
        return
    admin.execute_sql(f"CREATE SCHEMA {schema}")
    try:
        run(f"{PG_URL}?options=-c%20search_path%3D{schema}", "postgresql", args.cards,
            args.entries, load_postgres)
    finally:
        admin.execute_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


if __name__ == "__main__":
    main()
