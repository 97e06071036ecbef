"""HTTP throughput of the ledger, end to end: gunicorn on PostgreSQL and on SQLite.

    python bench/http.py [--duration 5] [--rounds 3] [--connections 16] [--workers 4]
                         [--sqlite-only] [--postgres-url URL] [--cards 1000]

For each database: a fresh database of its own (PostgreSQL: the `loyalty_http_bench`
database, emptied before and after; SQLite: a temporary file), 1,000 funded cards and one hot
card, then gunicorn (sync workers, loopback only) serving our app and a trivial 5-line
Flask endpoint in the same processes (bench/http_app.py). Each scenario is driven for
--duration seconds by wrk (Debian's `wrk` package) with a Lua script that gives every
request its own Idempotency-Key; without wrk, a Python load generator (threads, one
connection a request) stands in and says so, its ceiling is much lower.

The scenarios run in --rounds alternating rounds (trivial, healthz, …, then again): this
machine's speed drifts by a third over minutes, and one scenario after the other put that
drift into the ratios (the accrual share moved from 12.8 % to 17.0 % between rounds of
one run). Each round's shares are taken against that round's trivial endpoint.

Prints, side by side: req/s, p50/p99 and errors per scenario, each as a percentage of
the trivial endpoint on the same server (the median over the rounds, every round's also
printed), and the issue 17 targets on PostgreSQL. After the runs the ledger is checked:
Σ card balances = Σ entries = Σ lot remainders. Not a test: figures only.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide
# the standard library's `http` package: take the folder off before importing anything.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from the root

from peewee import fn  # noqa: E402

from api.auth import create_key  # noqa: E402
from api.db import connect, db, use  # noqa: E402
from api.ledger.cards import create_card  # noqa: E402
from api.ledger.operations import accrue  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Card, Entry, Lot, Portal  # noqa: E402

DEFAULT_PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL",
                                "postgresql://postgres@127.0.0.1:5432/test")
PG_BENCH_DB = "loyalty_http_bench"  # our own: the test suite truncates `test` at will
FIRST_PHONE = 79260000000
HOT_PHONE = "79269999999"
FUND_KOP = 1_000_000  # 10,000 ₽ bought: 300 ₽ of bonuses a card
HOT_FUND_KOP = 1_000_000_000  # 3,000,000 ₽ of bonuses: debits of 1 ₽ never run dry
SCENARIOS = ("trivial", "healthz", "card read", "accrual", "hot debit")
# Issue 17: % of the trivial endpoint on PostgreSQL, and 0 errors.
TARGETS = {"card read": 30, "accrual": 15, "hot debit": 8}


@dataclass
class Run:
    scenario: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_ms: dict | None = None  # CPU per request: server, database, load generator

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------- databases

def prepare(url: str, cards: int) -> tuple[str, list[str]]:
    """Schema, a portal, its API key, funded cards and the hot card; returns (key, numbers)."""
    use(connect(url))
    with db.connection_context():
        migrate()
        portal = Portal.create(member_id="bench-http", status="api")
        key = create_key(portal, "bench")
        numbers = []
        for i in range(cards):
            number = str(FIRST_PHONE + i)
            create_card(portal, {"phone": number, "last_name": "Бенч", "first_name": "Карта",
                                 "client_category": "Бенч"}, actor="bench")
            accrue(portal, number, FUND_KOP, key=f"fund:{number}", actor="bench")
            numbers.append(number)
            if (i + 1) % 250 == 0:
                print(f"  prepared {i + 1:,}/{cards:,} cards", flush=True)
        create_card(portal, {"phone": HOT_PHONE, "last_name": "Горячая", "first_name": "Карта",
                             "client_category": "Бенч"}, actor="bench")
        accrue(portal, HOT_PHONE, HOT_FUND_KOP, key="fund:hot", actor="bench")
    getattr(db.obj, "close_all", db.obj.close)()  # pooled or not (a before/after run)
    return key, numbers


def ledger_check(url: str, answered: int, funded: int) -> tuple[str, bool]:
    """The three sums that must agree, and whether every movement answered wrote its own
    entry (`answered`: keyed requests wrk counted; `funded`: the entries prepare() wrote):
    (the line to print, replayed). More entries than answers is expected (requests in
    flight when wrk stopped); fewer means requests replayed a key: the load generator's
    keys were not unique, and a replay is a read, not a movement."""
    use(connect(url))
    with db.connection_context():
        balances = Card.select(fn.COALESCE(fn.SUM(Card.balance_kop), 0)).scalar()
        entries = Entry.select(fn.COALESCE(fn.SUM(Entry.amount_kop), 0)).scalar()
        lots = Lot.select(fn.COALESCE(fn.SUM(Lot.remaining_kop), 0)).scalar()
        count = Entry.select().count()
    getattr(db.obj, "close_all", db.obj.close)()  # pooled or not (a before/after run)
    ok = "OK" if balances == entries == lots else "MISMATCH"
    written = count - funded
    replayed = written < answered
    fresh = "REPLAYS (keys not unique)" if replayed else "every one new"
    return (f"{count:,} entries; Σ balances {balances:,} = Σ entries {entries:,} = "
            f"Σ lot remainders {lots:,} kop: {ok}; {written:,} movements written for "
            f"{answered:,} answered: {fresh}", replayed)


class Postgres:
    """A database of our own, kept between runs and emptied at the start of each: dropping
    a database waits for a checkpoint, which on a busy disk can take minutes."""

    name = "postgresql"

    def __init__(self, base_url: str):
        import psycopg2

        self.psycopg2, self.base_url = psycopg2, base_url
        if not self._admin("SELECT 1 FROM pg_database WHERE datname = %s", (PG_BENCH_DB,)):
            self._admin(f'CREATE DATABASE "{PG_BENCH_DB}"')
        self.url = urlunparse(urlparse(base_url)._replace(path=f"/{PG_BENCH_DB}"))
        self._admin("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public", url=self.url)

    def _admin(self, statement: str, params=(), url: str | None = None):
        conn = self.psycopg2.connect(url or self.base_url, connect_timeout=20)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def close(self) -> None:
        self._admin("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public", url=self.url)


class Sqlite:
    name = "sqlite"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="loyalty-http-bench-")
        self.url = f"sqlite:///{self.dir}/bench.sqlite3"

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    def __init__(self, url: str, workers: int):
        self.port = free_port()
        env = {**os.environ, "LOYALTY_DATABASE_URL": url, "LOYALTY_SECRET_KEY": "bench-http",
               "LOYALTY_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
             f"127.0.0.1:{self.port}", "--log-level", "warning", "bench.http_app:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait()

    def _wait(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited before answering")
            try:
                urllib.request.urlopen(self.base + "/api/v1/healthz", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("gunicorn did not answer within a minute")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---------------------------------------------------------------- CPU, where it goes

TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def _cpu_s(pid: int) -> float:
    """A process's CPU seconds with its reaped children's (a PostgreSQL backend that exits
    is counted in the postmaster's); 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:15]) * TICK_S


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            pass
    return found


def _postgres_pids() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() in ("postgres", "postmaster"):
                pids.append(int(stat.parent.name))
        except OSError:
            pass
    return pids


class CpuMeter:
    """CPU seconds spent by the server (gunicorn and its workers), the database server
    (PostgreSQL's processes; SQLite runs inside the server) and the load generator (wrk,
    a child of ours: RUSAGE_CHILDREN once it is reaped; or this process's own threads),
    between start() and per_request_ms().
    Linux only; elsewhere it reads zeros."""

    def __init__(self, server_pid: int, postgres: bool):
        self.server_pid, self.postgres = server_pid, postgres

    def _read(self) -> tuple[float, float, float]:
        import resource

        server = sum(_cpu_s(p) for p in [self.server_pid, *_children(self.server_pid)])
        database = sum(_cpu_s(p) for p in _postgres_pids()) if self.postgres else 0.0
        load = sum(u.ru_utime + u.ru_stime for u in (  # wrk, or our own threads without it
            resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)))
        return server, database, load

    def start(self) -> None:
        self.before = self._read()

    def per_request_ms(self, requests: int) -> dict:
        after = self._read()
        spent = [a - b for a, b in zip(after, self.before)]
        return {k: 1000 * v / max(requests, 1)
                for k, v in zip(("server", "database", "load"), spent)}


# ---------------------------------------------------------------- load

def scenario_request(name: str, key: str, numbers: list[str]) -> dict:
    auth = {"Authorization": f"Bearer {key}"}
    json_h = {**auth, "Content-Type": "application/json"}
    return {
        "trivial": {"method": "GET", "path": "/trivial/", "headers": {}, "cards": None},
        "healthz": {"method": "GET", "path": "/api/v1/healthz", "headers": {}, "cards": None},
        "card read": {"method": "GET", "path": "/api/v1/cards/%s", "headers": auth,
                      "cards": numbers},
        "accrual": {"method": "POST", "path": "/api/v1/cards/%s/accruals", "headers": json_h,
                    "cards": numbers, "body": '{"amount": "100.00"}', "keyed": True},
        "hot debit": {"method": "POST", "path": "/api/v1/cards/%s/debits", "headers": json_h,
                      "cards": [HOT_PHONE], "body": '{"amount": "1.00"}', "keyed": True},
    }[name]


# Each request is written out once per card at init (wrk.format, as wrk would write it)
# and only the Idempotency-Key is joined in per request: building every request anew
# (wrk.format, its header table) cost the load generator twice the CPU per request of the
# trivial endpoint's, CPU taken from the two cores the server runs on.
LUA = r"""
local cards = {%(cards)s}
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args)
  n = 0
  heads, tails = {}, {}
  local targets = #cards > 0 and cards or {false}
  for i, card in ipairs(targets) do
    local path = "%(path)s"
    if card then path = string.format(path, card) end
    %(headers)s
    local text = wrk.format("%(method)s", path, nil, %(body)s)
    local at = %(keyed)s and string.find(text, "@KEY@", 1, true)
    if at then
      heads[i] = string.sub(text, 1, at - 1) .. "%(tag)s-" .. tid .. "-"
      tails[i] = string.sub(text, at + 5)
    else
      heads[i] = text
    end
  end
end
request = function()
  n = n + 1
  local i = #cards > 0 and (n * 7919 + tid * 104729) %% #cards + 1 or 1
  local tail = tails[i]
  if tail then return heads[i] .. n .. tail end
  return heads[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%f %%d %%f %%f\n", summary.requests,
    summary.duration / 1e6, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def wrk_run(name: str, spec: dict, base: str, args, tag: str) -> Run:
    headers = "".join(f' wrk.headers["{k}"] = "{v}";' for k, v in spec["headers"].items())
    if spec.get("keyed"):
        headers += ' wrk.headers["Idempotency-Key"] = "@KEY@";'
    script = LUA % {"cards": ",".join(f'"{c}"' for c in spec["cards"] or []),
                    "path": spec["path"], "method": spec["method"], "headers": headers,
                    "keyed": "true" if spec.get("keyed") else "false", "tag": tag,
                    "body": f"'{spec['body']}'" if spec.get("body") else "nil"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        out = subprocess.run(["wrk", "-t", "2", "-c", str(args.connections), "-d",
                              f"{args.duration}s", "--timeout", "10s", "-s", handle.name,
                              base + "/"], capture_output=True, text=True,
                             timeout=args.duration + 60).stdout
    finally:
        os.unlink(handle.name)
    found = re.search(r"RESULT (\d+) ([\d.]+) (\d+) ([\d.]+) ([\d.]+)", out)
    if not found:
        raise RuntimeError(f"wrk gave no result for {name}: {out[-300:]}")
    requests, seconds, errors, p50, p99 = found.groups()
    return Run(name, int(requests), float(seconds), int(errors), float(p50), float(p99))


def python_run(name: str, spec: dict, base: str, args, tag: str) -> Run:
    """Threads, one connection a request (gunicorn's sync workers close each anyway)."""
    import http.client

    stop_at = time.monotonic() + args.duration
    latencies: list[float] = []
    errors, lock = [0], threading.Lock()
    port = int(base.rsplit(":", 1)[1])

    def worker(tid: int) -> None:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            cards = spec["cards"]
            path = spec["path"] % cards[(n * 7919 + tid * 104729) % len(cards)] if cards \
                else spec["path"]
            headers = dict(spec["headers"])
            if spec.get("keyed"):
                headers["Idempotency-Key"] = f"{tag}-{tid}-{n}"
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request(spec["method"], path, body=spec.get("body"), headers=headers)
                status = conn.getresponse().status
                conn.close()
            except OSError:
                status = 599
            took = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(took)
                errors[0] += status >= 400

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Run(name, len(latencies), seconds, errors[0], cuts[49], cuts[98])


# ---------------------------------------------------------------- one database, all scenarios

def bench_backend(backend, args, drive) -> list[Scenario]:
    """Every scenario, in --rounds alternating rounds (trivial, healthz, …, trivial, …): a
    change in the machine's speed over the minutes of a run lands on every scenario of a
    round, and each share is taken against the trivial endpoint of its own round."""
    print(f"{backend.name}: preparing {args.cards:,} cards and the hot card…", flush=True)
    key, numbers = prepare(backend.url, args.cards)
    server = Gunicorn(backend.url, args.workers)
    scenarios = [Scenario(name) for name in SCENARIOS]
    try:
        for round_no in range(1, args.rounds + 1):
            for scenario in scenarios:
                print(f"{backend.name}: round {round_no}/{args.rounds}, {scenario.name} for "
                      f"{args.duration}s, {args.connections} connections…", flush=True)
                scenario.runs.append(measure(backend, server, scenario.name, key, numbers,
                                             args, drive, f"r{round_no}"))
            shares = ", ".join(f"{s.name} {s.share(scenarios[0], -1):.1f} %"
                               for s in scenarios[1:])
            print(f"  round {round_no}: of the trivial endpoint: {shares}", flush=True)
    finally:
        server.stop()
    keyed = [s for s in scenarios if scenario_request(s.name, key, numbers).get("keyed")]
    answered = sum(run.requests for s in keyed for run in s.runs)
    check, replayed = ledger_check(backend.url, answered, funded=args.cards + 1)
    print(f"{backend.name}: ledger after the runs: {check}", flush=True)
    for scenario in keyed:
        scenario.replayed = replayed
    return scenarios


def measure(backend, server, name, key, numbers, args, drive, tag) -> Run:
    spec = scenario_request(name, key, numbers)
    meter = CpuMeter(server.process.pid, postgres=backend.name == "postgresql")
    meter.start()
    run = drive(name, spec, server.base, args,
                f"{backend.name}-{name.replace(' ', '')}-{tag}")
    run.cpu_ms = meter.per_request_ms(run.requests)
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in run.cpu_ms.items())
    print(f"  {run.per_s:,.0f} req/s, p99 {run.p99_ms:.1f} ms, {run.errors} errors; "
          f"CPU ms a request: {cpu}", flush=True)
    return run


@dataclass
class Scenario:
    """One scenario's runs, one a round."""
    name: str
    runs: list[Run] = field(default_factory=list)
    replayed: bool = False  # movements answered from stored replays (bench_backend)

    def share(self, trivial: "Scenario", i: int) -> float:
        base = trivial.runs[i].per_s
        return 100 * self.runs[i].per_s / base if base else 0.0

    def median_share(self, trivial: "Scenario") -> float:
        return statistics.median(self.share(trivial, i) for i in range(len(self.runs)))

    @property
    def per_s(self) -> float:  # all rounds together
        seconds = sum(r.seconds for r in self.runs)
        return sum(r.requests for r in self.runs) / seconds if seconds else 0.0

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.runs)


def print_table(results: dict[str, list[Scenario]], generator: str, args) -> None:
    print(f"\nHTTP, gunicorn {args.workers} sync workers, {generator}, {args.connections} "
          f"connections, {args.rounds} rounds of {args.duration}s a scenario (req/s: all "
          f"rounds; p50, p99: the rounds' median; %: the median of each round's share of "
          f"the trivial endpoint, same server)")
    names = list(results)
    print(f"{'':12}" + "".join(f"| {n:^40}" for n in names))
    print(f"{'':12}" + "".join(f"| {'req/s':>8} {'p50':>7} {'p99':>7} {'err':>5} {'%':>6}  "
                               for _ in names))
    for i, scenario in enumerate(SCENARIOS):
        line = f"{scenario:12}"
        for name in names:
            found, trivial = results[name][i], results[name][0]
            line += (f"| {found.per_s:8,.0f} {found.median('p50_ms'):6.1f}ms "
                     f"{found.median('p99_ms'):6.1f}ms {found.errors:5d} "
                     f"{found.median_share(trivial):5.1f}%  ")
        print(line)


def print_verdicts(scenarios: list[Scenario]) -> None:
    trivial = scenarios[0]
    for scenario in scenarios:
        if scenario.name in TARGETS:
            share = scenario.median_share(trivial)
            rounds = ", ".join(f"{scenario.share(trivial, i):.1f}"
                               for i in range(len(scenario.runs)))
            ok = share >= TARGETS[scenario.name] and scenario.errors == 0 \
                and not scenario.replayed
            replays = ", answered from replays" if scenario.replayed else ""
            print(f"verdict: postgresql {scenario.name}: {share:.1f} % of trivial (rounds: "
                  f"{rounds}), {scenario.errors} errors{replays} (target ≥ "
                  f"{TARGETS[scenario.name]} %, 0 errors): {'PASS' if ok else 'FAIL'}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds a scenario a round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--cards", type=int, default=1_000)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-url", default=DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 120 or not 1 <= args.connections <= 256 or args.cards < 1 \
            or not 1 <= args.rounds <= 20:
        parser.error("--duration 1..120 s, --connections 1..256, --cards ≥ 1, --rounds 1..20")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    drive, generator = (wrk_run, "wrk") if shutil.which("wrk") else (
        python_run, "Python load generator (no wrk: the trivial ceiling is understated)")
    print(f"load generator: {generator}", flush=True)
    results: dict[str, list[Run]] = {}
    backends = [Sqlite]
    if not args.sqlite_only:
        backends.insert(0, lambda: Postgres(args.postgres_url))
    for make in backends:
        try:
            backend = make()
        except Exception as exc:  # unreachable, no rights: say why and go on
            print(f"skipped a database: {type(exc).__name__}: {str(exc).strip()[:160]}")
            continue
        try:
            results[backend.name] = bench_backend(backend, args, drive)
        finally:
            backend.close()
    print_table(results, generator, args)
    if "postgresql" in results:
        print_verdicts(results["postgresql"])
    print(json.dumps({name: {s.name: {"req_s": round(s.per_s),
                                      "percent": round(s.median_share(found[0]), 1)}
                             for s in found}
                      for name, found in results.items()}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
