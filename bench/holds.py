"""Hold latency: hold, capture and release one after another on random cards.

    python bench/holds.py [--ops 2000] [--cards 200] [--sqlite-only] [--postgres-url URL]

Each operation is one ledger transaction (card lock, idempotency record, the hold row;
a capture also runs the debit). Prints p50/p99 per kind on SQLite and PostgreSQL.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

# The project's root first, bench/ last: bench/http.py would hide the stdlib's http.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
sys.path.append(str(Path(__file__).resolve().parent))

import databases  # noqa: E402
from api.db import db, use  # noqa: E402
from api.ledger import cards, holds, operations  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Portal  # noqa: E402



def run(label: str, database, n_ops: int, n_cards: int) -> None:
    use(database)
    db.connect(reuse_if_open=True)
    migrate()
    portal = Portal.create(member_id=f"bench-{time.time_ns()}")
    numbers = []
    for i in range(n_cards):
        card, _ = cards.create_card(portal, {"phone": f"+7916{i:07d}", "last_name": "Б",
                                             "first_name": "Б", "client_category": "Б"},
                                    actor="bench")
        operations.adjust(portal, card.number, 10_000_000, key=f"fund{i}", actor="bench",
                          reason="bench")
        numbers.append(card.number)
    rng, times = random.Random(7), {"hold": [], "capture": [], "release": []}
    for i in range(n_ops):
        number = rng.choice(numbers)
        started = time.perf_counter()
        made = holds.hold(portal, number, 10_000, key=f"h{i}", actor="bench").result
        times["hold"].append(time.perf_counter() - started)
        kind = "capture" if i % 2 else "release"
        started = time.perf_counter()
        if kind == "capture":
            holds.capture(portal, made["hold_id"], key=f"c{i}", actor="bench", amount_kop=5_000)
        else:
            holds.release(portal, made["hold_id"], key=f"r{i}", actor="bench")
        times[kind].append(time.perf_counter() - started)
    parts = []
    for kind, values in times.items():
        cuts = statistics.quantiles(values, n=100)
        parts.append(f"{kind} p50 {cuts[49] * 1000:.2f} ms p99 {cuts[98] * 1000:.2f} ms")
    print(f"{label:10} {n_ops} holds on {n_cards} cards: " + "; ".join(parts))
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--cards", type=int, default=200)
    databases.add_arguments(parser)
    args = parser.parse_args()
    for label, database in databases.each(args, "bench_holds"):
        run(label, database, args.ops, args.cards)


if __name__ == "__main__":
    main()
