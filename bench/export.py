"""Export benchmark: 1,000,000 movements (and the cards behind them) as streamed CSV on
SQLite, through api.data.exports and csvout.pieces as the CLI and the API run them.

Prints rows/s and the peak memory (RSS) before and after, beside the target (memory
that does not grow with the export). Not a test: `python bench/export.py [--entries N]`.
"""
from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import date, datetime, timedelta

# The repository instead of bench/ first on the path: bench/http.py would shadow the
# standard library's http package (werkzeug imports it).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from api.data import csvout, exports  # noqa: E402
from api.db import connect, db, use  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Portal  # noqa: E402

CHUNK = 50_000
PER_CARD = 10
START = datetime(2026, 1, 1)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(path: str, portal_id: int, entries: int) -> None:
    """Cards and entries straight through sqlite3: the setup is not what is measured."""
    con = sqlite3.connect(path)
    cards = entries // PER_CARD
    now = START.isoformat(" ")
    con.executemany(
        "INSERT INTO card (portal_id, number, last_name, first_name, client_category, status,"
        " tier, balance_kop, purchases_kop, search_text, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        ((portal_id, f"7916{i:07d}", "Фамилия", f"Имя{i}", "Врач", "active", "Базовый",
          PER_CARD * 3000, PER_CARD * 100000, f"фамилия имя{i}", now, now) for i in range(cards)))
    con.commit()
    for base in range(0, entries, CHUNK):
        rows = []
        for i in range(base, min(base + CHUNK, entries)):
            card_id, step = i // PER_CARD + 1, i % PER_CARD
            rows.append((portal_id, card_id, f"bench:{i}", "accrual", 3000, (step + 1) * 3000,
                         f"deal-{i}", 100000, "3.00", "bench", None,
                         (START + timedelta(seconds=i * 20)).isoformat(" ")))
        con.executemany(
            "INSERT INTO entry (portal_id, card_id, idempotency_key, kind, amount_kop,"
            " balance_after_kop, reference, purchase_kop, percent, actor, comment, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        con.commit()
        print(f"  filled {min(base + CHUNK, entries):,} of {entries:,} entries", file=sys.stderr)
    con.close()


def timed(label: str, header, rows) -> None:
    before = peak_rss_mb()
    started, count, size = time.perf_counter(), 0, 0

    def counted():
        nonlocal count
        for row in rows:
            count += 1
            yield row

    with open(os.devnull, "w", encoding="utf-8") as out:
        for piece in csvout.pieces(header, counted()):
            size += len(piece)
            out.write(piece)
    seconds = time.perf_counter() - started
    print(f"{label}: {count:,} rows, {size / 1e6:.0f} MB of CSV in {seconds:.1f} s = "
          f"{count / seconds:,.0f} rows/s; peak RSS {before:.0f} MB before, "
          f"{peak_rss_mb():.0f} MB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="bench-export-"), "bench.sqlite3")
    use(connect(f"sqlite:///{path}"))
    db.connect()
    migrate()
    portal = Portal.create(member_id="bench", domain="bench.bitrix24.ru", status="active")
    db.close()
    fill(path, portal.id, args.entries)
    db.connect()
    end = (START + timedelta(seconds=args.entries * 20)).date() + timedelta(days=1)
    timed("movements on SQLite", exports.MOVEMENT_HEADER,
          exports.movement_rows(portal, date(2026, 1, 1), end))
    timed("cards on SQLite", exports.CARD_HEADER, exports.card_rows(portal))


if __name__ == "__main__":
    main()
