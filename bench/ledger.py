"""Ledger throughput: our accrue/debit beside the very same SQL on the raw driver.

    python bench/ledger.py [--ops 20000] [--cards 1000] [--sqlite-only]
                           [--postgres-url URL] [--show-sql] [--profile]

"Ours" calls api.ledger.operations.accrue / debit in process (no HTTP layer), a 50/50
mix on random cards. "Raw" is the floor: the statements our code issued for one accrual
and one debit, captured from peewee's query log and replayed with sqlite3 / psycopg2.
ours ÷ raw is what the ledger code (ORM, rules, hashing, JSON) costs on top of the SQL.

Targets: ≥ 70 % of raw throughput on each database (issue 17); on SQLite, p99 of one
operation < 5 ms. Each side gets a database of its own, prepared alike; the two run in
alternating rounds of the same operations, so a drift in the machine's load or the disk's
write-back lands on both (one side after the other, the ratio moved by ±15 % run to run).
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import logging
import os
import pstats
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

# Run as a script from the root, not from bench/: bench/http.py would hide the stdlib's http.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from peewee import fn  # noqa: E402

from api.db import connect, db, release_all, use  # noqa: E402
from api.ledger import sql as sql_mod  # noqa: E402
from api.ledger.cards import create_card  # noqa: E402
from api.ledger.errors import InsufficientBalance  # noqa: E402
from api.ledger.operations import accrue, debit  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import ALL_TABLES, Card, Entry, Lot, Portal, SchemaVersion  # noqa: E402

SEED = 20240601
FIRST_PHONE = 79160000000
ACTOR = "bench"
# Funding: 10,000 ₽ bought → 300 ₽ of bonuses per card (3 %, the default first tier).
FUND_PURCHASE_KOP = 1_000_000
# Each accrual adds 30 ₽, each debit takes 20 ₽: balances only grow, so debits succeed
# and purchases stay under the next tier (the bonus, hence the SQL, stays the same).
PURCHASE_KOP = 100_000
DEBIT_KOP = 2_000
DEFAULT_PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL",
                                "postgresql://postgres@127.0.0.1:5432/test")
PG_BENCH_DB = "loyalty_bench"  # our own database: the test suite truncates `test` at will
PG_BENCH_SCHEMA = "bench"  # fallback when we may not create databases
TARGET_RATIO = 0.70  # issue 17: ours ≥ 70 % of raw, on both databases
ROUNDS = 10  # ours and raw alternate this many times
TARGET_P99_MS = 5.0


# ---------------------------------------------------------------- measurements

@dataclass
class Run:
    label: str
    wall_ns: int = 0
    cpu_ns: int = 0  # this process's CPU over the loop (the database's too on SQLite)
    latencies_ns: list[int] = field(default_factory=list)
    refused: int = 0  # debits refused for lack of balance (should stay 0)

    @property
    def ops_per_s(self) -> float:
        return len(self.latencies_ns) / (self.wall_ns / 1e9)

    def percentile_ms(self, p: int) -> float:
        return statistics.quantiles(self.latencies_ns, n=100)[p - 1] / 1e6

    def text(self) -> str:
        return (f"{self.label} {self.ops_per_s:>7,.0f} ops/s  p50 {self.percentile_ms(50):5.2f} ms"
                f"  p99 {self.percentile_ms(99):5.2f} ms  CPU {self.cpu_us_per_op:4.0f} µs/op")

    @property
    def cpu_us_per_op(self) -> float:
        return self.cpu_ns / 1e3 / max(len(self.latencies_ns), 1)


def timed_loop(run: Run, indices: range, step) -> Run:
    """Call step(i) for each index, timing each call; wall and CPU add up over calls."""
    cpu_start, start = time.process_time_ns(), time.perf_counter_ns()
    for i in indices:
        t0 = time.perf_counter_ns()
        step(i)
        run.latencies_ns.append(time.perf_counter_ns() - t0)
    run.wall_ns += time.perf_counter_ns() - start
    run.cpu_ns += time.process_time_ns() - cpu_start
    return run


def card_picks(ops: int, cards: int) -> list[int]:
    """The same seeded card sequence for ours and raw; op i is an accrual when i is even."""
    rng = random.Random(SEED)
    return [rng.randrange(cards) for _ in range(ops)]


# ---------------------------------------------------------------- the ledger, through our code

def prepare_ledger(cards: int) -> tuple[Portal, list[str]]:
    """One portal, `cards` cards, each funded by an accrual (not timed)."""
    portal = Portal.create(member_id="bench-portal", domain="bench.bitrix24.ru")
    numbers = []
    for i in range(cards):
        data = {"phone": str(FIRST_PHONE + i), "last_name": "Бенчев", "first_name": "Иван",
                "client_category": "Розница"}
        card, _ = create_card(portal, data, actor=ACTOR)
        accrue(portal, card.number, FUND_PURCHASE_KOP, key=f"fund:{card.number}", actor=ACTOR)
        numbers.append(card.number)
    return portal, numbers


def ours_step(portal: Portal, numbers: list[str], picks: list[int], run: Run):
    def step(i: int) -> None:
        number = numbers[picks[i]]
        if i % 2 == 0:
            accrue(portal, number, PURCHASE_KOP, key=f"ours:{i}", actor=ACTOR)
            return
        try:
            debit(portal, number, DEBIT_KOP, key=f"ours:{i}", actor=ACTOR)
        except InsufficientBalance:
            run.refused += 1

    return step


def ledger_check() -> str:
    """Proof of real work: rows written, and the three sums that must agree."""
    entries = Entry.select().count()
    balances = Card.select(fn.SUM(Card.balance_kop)).scalar() or 0
    entry_sum = Entry.select(fn.SUM(Entry.amount_kop)).scalar() or 0
    lot_sum = Lot.select(fn.SUM(Lot.remaining_kop)).scalar() or 0
    verdict = "OK" if balances == entry_sum == lot_sum else "MISMATCH"
    return (f"{entries:,} entries; Σ card balances {balances:,} = Σ entries {entry_sum:,}"
            f" = Σ lot remainders {lot_sum:,} kop: {verdict}")


# ---------------------------------------------------------------- capturing our statements

@dataclass
class Statement:
    sql: str
    kind: str  # select / insert / update
    table: str
    # One (role, value) per placeholder: role None keeps the captured value; a role
    # names what must be fresh per operation (see ROLES).
    params: list[tuple[str | None, object]]
    prepare: str | None = None  # PostgreSQL: the PREPARE our code ran once per connection


# Which placeholder values identify the operation rather than describe it. Fresh values
# keep the shape of ours: an operation's key as the caller sent it, an entry's as the
# ledger derives it (64 hex digits: its index takes them at random places, as ours). Everything
# else (amounts, timestamps, the result JSON, the request hash) is replayed as captured:
# those values cost the same to bind whatever they are, and no constraint needs them unique.
ROLES = {
    ("card", "id"): "card", ("card", "number"): "number",
    ("entry", "idempotency_key"): "entry_key", ("operation", "key"): "key",
    ("lot", "id"): "lot", ("entry", "id"): "entry",
    ("*", "card_id"): "card", ("*", "entry_id"): "entry", ("*", "lot_id"): "lot",
    ("*", "operation_id"): "operation",
}
# PostgreSQL's lock-and-claim (api.ledger.sql "lock_claim"): its placeholders end with
# number, scope, key, kind, request hash, time; it returns the card, the new operation's
# id and the id drawn for the entry, as the last two columns.
LOCK_CLAIM_ROLES = {-6: "number", -4: "key"}
# PostgreSQL's debit takes its oldest lot with the sum of its holds ("held_take_oldest"):
# the card is bound first and fourth; it returns (held, the lot's id).
HELD_TAKE_ROLES = {0: "card", 3: "card"}
PLACEHOLDER = re.compile(r"\?|%s")
IDENT = re.compile(r'"(\w+)"')


def parse_statement(logged: str, values: list) -> Statement:
    """Name the column behind each placeholder: the INSERT column list, else the last
    quoted identifier before it (`"t1"."card_id" = ?`); LIMIT/OFFSET keep their value.
    A prepared statement (`EXECUTE loyalty_…`, PostgreSQL) is read from its PREPARE text
    and replayed as it ran: prepared on the raw connection too (`prepare`)."""
    prepare = None
    if logged.startswith("EXECUTE loyalty_"):
        name = logged.split()[1][len("loyalty_"):]
        prepare = sql_mod.dialect().prepare[name]
        sql = re.sub(r"\$\d+", "%s", prepare.split(" AS ", 1)[1])
    else:
        sql = logged
    kind = sql.split(None, 1)[0].lower()
    table = re.search(r'(?:FROM|UPDATE|INTO) "(\w+)"', sql).group(1)
    if kind == "insert":
        # Map through the VALUES list: an upsert may hold literals (the rollups' "1").
        names = IDENT.findall(sql[sql.index("(") + 1:sql.index(")")])
        start = sql.index("VALUES (") + len("VALUES (")
        items = [item.strip() for item in sql[start:sql.index(")", start)].split(",")]
        columns = [name for name, item in zip(names, items) if PLACEHOLDER.fullmatch(item)]
    else:
        columns = []
        for match in PLACEHOLDER.finditer(sql):
            before = sql[:match.start()].rstrip()
            is_paging = before.endswith(("LIMIT", "OFFSET"))
            columns.append(None if is_paging else IDENT.findall(before)[-1])
    assert len(columns) == len(values), (sql, values)
    roles = [ROLES.get((table, c)) or ROLES.get(("*", c)) for c in columns]
    if kind == "with" and "held_take_oldest" in logged:
        kind, roles = "take", [HELD_TAKE_ROLES.get(n) for n in range(len(values))]
    elif kind == "with":  # the lock-and-claim: its columns are not named at its placeholders
        roles = [LOCK_CLAIM_ROLES.get(n - len(values)) for n in range(len(values))]
    return Statement(logged, kind, table, list(zip(roles, values)), prepare)


class QueryLog(logging.Handler):
    """peewee logs every execute_sql as a (sql, params) tuple on the `peewee` logger."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.queries: list[tuple[str, list]] = []

    def emit(self, record):
        self.queries.append(record.msg)


def captured(call) -> list[Statement]:
    logger, handler = logging.getLogger("peewee"), QueryLog()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        call()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return [parse_statement(sql, list(params)) for sql, params in handler.queries]


def capture_operations(portal: Portal, number: str) -> dict[str, list[Statement]]:
    """One accrual and one debit through our code, recorded statement by statement.
    BEGIN/COMMIT go through peewee's transaction, outside the query log: the replay
    issues them itself, in the same form (the backend's `begin`)."""
    return {
        "accrual": captured(lambda: accrue(portal, number, PURCHASE_KOP, key="capture:accrual",
                                           actor=ACTOR)),
        "debit": captured(lambda: debit(portal, number, DEBIT_KOP, key="capture:debit",
                                        actor=ACTOR)),
    }


# ---------------------------------------------------------------- the raw floor

def replay(cursor, begin: str, statements: list[Statement], ctx: dict) -> None:
    """One operation on the raw driver: the captured statements, byte for byte the same
    SQL, in the same order, in one transaction opened the way peewee opens it. Only the
    identity values are rebound (ROLES): this op's card, its fresh idempotency key, and
    the ids of rows it inserts or selects (the new entry, the lot it spends from). Like
    the ORM, every SELECT's rows are fetched."""
    cursor.execute(begin)
    for st in statements:
        # A role not bound yet (the debit's conditional UPDATE found the oldest lot too
        # small here, where our code would take its long path) keeps the captured value:
        # the raw side is a cost floor, not a second ledger.
        cursor.execute(st.sql, [ctx.get(role, value) if role else value
                                for role, value in st.params])
        if st.kind == "select":
            rows = cursor.fetchall()
            if st.table == "lot" and rows:
                ctx["lot"] = rows[0][0]  # the oldest spendable lot, as lots.take uses first
        elif st.kind == "with":  # the lock-and-claim: the claim's id, the entry's drawn id
            ctx["operation"], ctx["entry"] = cursor.fetchone()[-2:]
        elif st.kind == "take":  # the holds' sum and the lot taken (None: too small here)
            taken = cursor.fetchone()[1]
            if taken is not None:
                ctx["lot"] = taken
        elif st.kind == "insert":
            # PostgreSQL: RETURNING "id" where our code reads it; SQLite: lastrowid.
            if cursor.description:
                ctx[st.table] = cursor.fetchone()[0]
            elif isinstance(cursor, sqlite3.Cursor):
                ctx[st.table] = cursor.lastrowid
        elif cursor.description:  # UPDATE ... RETURNING: read its rows, as our code does
            rows = cursor.fetchall()
            if st.table == "lot" and rows:
                ctx["lot"] = rows[0][0]  # the lot the debit's conditional UPDATE took
    cursor.execute("COMMIT")


def raw_step(backend, cursor, templates: dict[str, list[Statement]],
             cards: list[tuple[int, str]], picks: list[int]):
    sequence = (templates["accrual"], templates["debit"])
    entry_keys = [hashlib.sha256(f"raw:{i}".encode()).hexdigest() for i in range(len(picks))]
    for prepare in {st.prepare for op in sequence for st in op if st.prepare}:
        cursor.execute(prepare)  # as our pool's connections do, once each

    def step(i: int) -> None:
        card_id, number = cards[picks[i]]
        ctx = {"card": card_id, "number": number, "key": f"raw:{i}", "entry_key": entry_keys[i]}
        replay(cursor, backend.begin, sequence[i % 2], ctx)

    return step


# ---------------------------------------------------------------- backends

class SqliteBackend:
    """A file per side ("ours", "raw"), both kept until close."""

    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # api.db.connect: lock_type="IMMEDIATE"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ledger-bench-")

    def _path(self, side: str) -> str:
        return os.path.join(self.dir, f"{side}.sqlite3")

    def database(self, side: str):
        return connect(f"sqlite:///{self._path(side)}")

    def fresh(self, side: str):
        database = self.database(side)
        use(database)
        database.connect()
        migrate()
        return database

    def raw_connect(self, side: str = "raw"):
        # The settings api.db.connect gives peewee: autocommit mode with explicit
        # BEGIN IMMEDIATE, WAL, synchronous=normal, foreign keys, busy timeout.
        conn = sqlite3.connect(self._path(side), timeout=30, isolation_level=None)
        for pragma in ("journal_mode = wal", "foreign_keys = 1", "synchronous = normal",
                       "busy_timeout = 30000"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresBackend:
    """A database per side (loyalty_bench, loyalty_bench_raw) if we may create them, else
    a schema per side in the given one; either way the test suite's tables are never
    touched. Both are kept until close."""

    name = "postgresql"
    begin = "BEGIN"  # peewee: autocommit connection, explicit BEGIN, no isolation level

    def __init__(self, base_url: str):
        import psycopg2  # only needed here

        self.psycopg2 = psycopg2
        self.base_url = base_url
        self.urls, self.cleanup_sql = {}, []
        for side in ("ours", "raw"):
            self.urls[side], cleanup = self._bench_location(side)
            self.cleanup_sql.append(cleanup)

    def _admin(self):
        conn = self.psycopg2.connect(self.base_url, connect_timeout=3)
        conn.autocommit = True
        return conn

    def _bench_location(self, side: str) -> tuple[str, str]:
        suffix = "" if side == "ours" else f"_{side}"
        name, schema = PG_BENCH_DB + suffix, PG_BENCH_SCHEMA + suffix
        admin = self._admin()
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
            url = urlunparse(urlparse(self.base_url)._replace(path=f"/{name}"))
            return url, f'DROP DATABASE IF EXISTS "{name}"'
        except self.psycopg2.Error:
            with admin.cursor() as cur:
                cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            sep = "&" if urlparse(self.base_url).query else "?"
            url = f"{self.base_url}{sep}options=-csearch_path%3D{schema}"
            return url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'
        finally:
            admin.close()

    def database(self, side: str):
        return connect(self.urls[side])

    def fresh(self, side: str):
        database = self.database(side)
        use(database)
        database.connect()
        db.drop_tables([*ALL_TABLES, SchemaVersion], cascade=True)  # a rerun starts clean
        migrate()
        return database

    def raw_connect(self, side: str = "raw"):
        conn = self.psycopg2.connect(self.urls[side])
        conn.autocommit = True  # as peewee runs it: BEGIN/COMMIT are sent explicitly
        return conn

    def close(self):
        release_all()  # the pool keeps its connections open: the DROP needs them gone
        admin = self._admin()
        try:
            with admin.cursor() as cur:
                for statement in self.cleanup_sql:
                    cur.execute(statement)
        finally:
            admin.close()


# ---------------------------------------------------------------- one backend, both sides

@dataclass
class Result:
    backend: str
    ours: Run
    raw: Run
    ours_check: str
    raw_check: str
    templates: dict  # "accrual"/"debit" → the captured statements
    begin: str  # how the backend opens a transaction (not in peewee's query log)

    @property
    def ratio(self) -> float:
        return self.ours.ops_per_s / self.raw.ops_per_s


def prepare_raw(backend, args) -> tuple[dict, list[tuple[int, str]]]:
    """The raw side's database, prepared through our code like ours, and one accrual and
    one debit captured from it; peewee's connection to it is closed after."""
    database = backend.fresh("raw")
    try:
        print(f"{backend.name}: preparing {args.cards:,} cards for raw", file=sys.stderr)
        portal, numbers = prepare_ledger(args.cards)
        templates = capture_operations(portal, numbers[0])
        ids = dict(Card.select(Card.number, Card.id).tuples())
        return templates, [(ids[n], n) for n in numbers]
    finally:
        database.close()
        database.close_all()


def check(database) -> str:
    use(database)
    try:
        with database.connection_context():
            return ledger_check()
    finally:
        database.close_all()


def measure(backend, args) -> Result:
    """Both sides on databases of their own, prepared alike, then run in alternating
    rounds of the same operations (ours, raw, ours, raw…): a drift of the machine's load
    or of the disk's write-back lands on both sides, not on one."""
    picks = card_picks(args.ops, args.cards)
    templates, cards = prepare_raw(backend, args)
    database = backend.fresh("ours")
    print(f"{backend.name}: preparing {args.cards:,} cards for ours", file=sys.stderr)
    portal, numbers = prepare_ledger(args.cards)
    ours, raw = Run("ours"), Run("raw ")
    conn = backend.raw_connect("raw")
    profiler = cProfile.Profile() if args.profile and backend.name == "sqlite" else None
    try:
        step_ours = ours_step(portal, numbers, picks, ours)
        step_raw = raw_step(backend, conn.cursor(), templates, cards, picks)
        size = -(-len(picks) // ROUNDS)
        for n, start in enumerate(range(0, len(picks), size), 1):
            indices = range(start, min(start + size, len(picks)))
            if profiler:
                profiler.enable()
            timed_loop(ours, indices, step_ours)
            if profiler:
                profiler.disable()
            timed_loop(raw, indices, step_raw)
            print(f"  round {n}/{ROUNDS}: {indices.stop:,}/{len(picks):,} ops each side",
                  file=sys.stderr, flush=True)
    finally:
        conn.close()
        database.close()
        database.close_all()  # a pooled close keeps the connection: drop it for real
    if profiler:
        print_profile(profiler)
    return Result(backend.name, ours, raw, check(database), check(backend.database("raw")),
                  templates, backend.begin)


# ---------------------------------------------------------------- output

def print_profile(profiler, top: int = 10) -> None:
    """Our functions first (api/), then the library code they spend it in."""
    print("\ncProfile of ours on SQLite (this run's figures are inflated by profiling):")
    stats = pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative")
    stats.print_stats(r"/api/", top)
    stats.sort_stats("tottime").print_stats(r"site-packages", top)


def print_statements(result: Result) -> None:
    for op, statements in result.templates.items():
        print(f"\n{result.backend}: statements of one {op} (inside {result.begin} … COMMIT):")
        for n, st in enumerate(statements, 1):
            values = [f"<{role}>" if role else repr(value) for role, value in st.params]
            print(f"  {n:2}. {st.sql}\n      [{', '.join(values)}]")


def print_result(result: Result, ops: int) -> None:
    counts = {op: len(st) for op, st in result.templates.items()}
    print(f"{result.backend:<10} {result.ours.text()} | {result.raw.text()}"
          f" | ratio {result.ratio * 100:.0f} %")
    print(f"{'':<10} statements per op: accrual {counts['accrual']}, debit {counts['debit']}"
          f" (+ BEGIN/COMMIT); {ops:,} ops each side, debits refused: ours"
          f" {result.ours.refused}")
    print(f"{'':<10} ours: {result.ours_check}")
    print(f"{'':<10} raw:  {result.raw_check} (a cost floor, not a second ledger: it"
          " replays the common path only)")


def print_verdicts(results: list[Result]) -> None:
    for result in results:
        ratio_ok = result.ratio >= TARGET_RATIO
        print(f"verdict: {result.backend} throughput {result.ratio * 100:.0f} % of raw"
              f" (target ≥ {TARGET_RATIO * 100:.0f} %): {'PASS' if ratio_ok else 'FAIL'}")
    p99 = results[0].ours.percentile_ms(99)
    print(f"verdict: SQLite p99 {p99:.2f} ms per operation (target < {TARGET_P99_MS:g} ms):"
          f" {'PASS' if p99 < TARGET_P99_MS else 'FAIL'}")


# ---------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20_000, help="operations per side")
    parser.add_argument("--cards", type=int, default=1_000)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-url", default=DEFAULT_PG_URL)
    parser.add_argument("--show-sql", action="store_true",
                        help="print the captured statement sequences")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile ours on SQLite, top 10 by cumulative time")
    args = parser.parse_args(argv)
    if args.ops < 100 or args.cards < 1:
        parser.error("--ops must be ≥ 100 and --cards ≥ 1")
    return args


def run_backend(backend, args) -> Result:
    try:
        return measure(backend, args)
    finally:
        backend.close()


def postgres_backend(url: str):
    """The backend, or None with the reason printed when PostgreSQL doesn't answer."""
    try:
        return PostgresBackend(url)
    except Exception as exc:  # unreachable, no driver, no rights: skip and say why
        print(f"postgresql: skipped, not reachable at {url}: {type(exc).__name__}: "
              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    results = [run_backend(SqliteBackend(), args)]
    if not args.sqlite_only:
        backend = postgres_backend(args.postgres_url)
        if backend:
            results.append(run_backend(backend, args))
    print(f"\nLedger: 50/50 accrual/debit, {args.ops:,} ops over {args.cards:,} cards,"
          " one thread, in process (ours = api.ledger, raw = same SQL on the bare driver)")
    for result in results:
        print_result(result, args.ops)
    print_verdicts(results)
    if args.show_sql:
        for result in results:
            print_statements(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
