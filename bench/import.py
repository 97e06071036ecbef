"""CSV import benchmark: 100,000 clients on SQLite (and PostgreSQL with --postgres URL),
a dry run and then the import applied, through api.data.imports as the CLI runs it.

Prints rows/s and the peak memory (RSS) beside the targets (100,000 rows under 60 s,
memory that does not grow with the file). Not a test: `python bench/import.py [--rows N]`.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time

# The repository instead of bench/ first on the path: bench/http.py would shadow the
# standard library's http package (werkzeug imports it).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from api.data import imports  # noqa: E402
from api.db import connect, db, use  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Entry, Portal  # noqa: E402

PG_SCHEMA = f"bench_import_{os.getpid()}"
HEADER = "Телефон;Фамилия;Имя;Отчество;E-mail;Дата рождения;Категория;Баланс;Покупки;Срок\r\n"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_csv(path: str, rows: int) -> None:
    """A cp1251 file as a Russian Excel saves it; one line in 200 is refused (landline)."""
    rng = random.Random(14)
    with open(path, "w", encoding="cp1251", newline="") as out:
        out.write(HEADER)
        for i in range(rows):
            phone = f"+7 495 {i % 1000:03d}-00-00" if i % 200 == 199 else \
                f"8 (916) {i // 10000:03d}-{i % 10000 // 100:02d}-{i % 100:02d}"
            out.write(f"{phone};Фамилия{i};Имя;Отчество;c{i}@example.ru;"
                      f"{1 + i % 28:02d}.{1 + i % 12:02d}.{1950 + i % 50};Врач;"
                      f"{rng.randrange(0, 500000) / 100:.2f};{rng.randrange(0, 20000000) / 100:.2f};"
                      f"\r\n")


def timed(portal: Portal, path: str, apply: bool) -> tuple[float, float, imports.Report]:
    """Wall seconds, and the CPU seconds of this process (honest on a shared machine)."""
    started, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as source:
        report = imports.run(portal, source, apply=apply, actor="bench",
                             progress=lambda line: print("  " + line, file=sys.stderr))
    return time.perf_counter() - started, time.process_time() - cpu, report


def bench(url: str, label: str, rows: int, path: str) -> None:
    if label == "PostgreSQL":  # a schema of its own: never another run's tables
        admin = connect(url)
        with admin.connection_context():
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
            admin.execute_sql(f"CREATE SCHEMA {PG_SCHEMA}")
        url += ("&" if "?" in url else "?") + f"options=-c%20search_path%3D{PG_SCHEMA}"
    use(connect(url))
    db.connect()
    migrate()
    portal = Portal.create(member_id="bench", domain="bench.bitrix24.ru", status="active")
    for apply in (False, True, True):
        seconds, cpu, report = timed(portal, path, apply)
        what = "apply again" if apply and Entry.select().count() and report.counts["created"] == 0 \
            else ("apply" if apply else "dry run")
        print(f"{label} {what}: {rows:,} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s "
              f"({cpu:.1f} s of CPU); {report.summary()} peak RSS {peak_rss_mb():.0f} MB")
        if apply and what == "apply":
            verdict = "OK" if seconds < 60 else "FAIL"
            print(f"verdict: {verdict} (target: {rows:,} rows under 60 s)")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default=None, help="also run on this PostgreSQL URL")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-import-")
    path = os.path.join(folder, "clients.csv")
    write_csv(path, args.rows)
    print(f"file: {args.rows:,} rows, {os.path.getsize(path) / 1e6:.1f} MB; "
          f"peak RSS before {peak_rss_mb():.0f} MB", file=sys.stderr)
    bench(f"sqlite:///{os.path.join(folder, 'bench.sqlite3')}", "SQLite", args.rows, path)
    if args.postgres:
        bench(args.postgres, "PostgreSQL", args.rows, path)
        admin = connect(args.postgres)
        with admin.connection_context():
            admin.execute_sql(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
