"""Webhook deliveries per second: our sender against a receiver on loopback.

    python bench/webhooks.py [--events 5000] [--cards 500] [--sqlite-only] [--postgres-url URL]

Events are recorded as a movement records them (api.webhooks.events.emit, one transaction
each), then api.webhooks.sender.deliver_due runs until nothing is pending: claim, sign,
POST over a kept-alive connection, log the attempt. The receiver answers 200 at once and
checks every signature, so the figure is our side's cost plus one loopback round trip.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

# The project's root first, bench/ last: bench/http.py would hide the stdlib's http.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
sys.path.append(str(Path(__file__).resolve().parent))
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

import databases  # noqa: E402
from api.db import db, use  # noqa: E402
from api.migrations import migrate  # noqa: E402
from api.models import Portal, WebhookAttempt, WebhookDelivery  # noqa: E402
from api.webhooks import events, sender, signing, subscriptions  # noqa: E402

CONFIG = {"WEBHOOK_ALLOW_HTTP": True, "WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32"}


def receiver(secret_box: dict):
    bad = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if not signing.verify(secret_box["secret"], headers, body, int(time.time())):
                bad.append(headers.get("webhook-id"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, bad


def run(label: str, database, n_events: int, n_cards: int) -> None:
    use(database)
    db.connect(reuse_if_open=True)
    migrate()
    portal = Portal.create(member_id=f"bench-{time.time_ns()}")
    box: dict = {}
    server, bad = receiver(box)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    sub, box["secret"] = subscriptions.create(portal, {"url": url, "events": list(events.EVENTS)},
                                              CONFIG)
    started = time.perf_counter()
    for i in range(n_events):
        with db.atomic():
            events.emit(portal, "bonus.accrued", f"bench:{i}",
                        {"card": {"number": f"7916{i % n_cards:07d}"}, "amount": "30.00"},
                        card_number=f"7916{i % n_cards:07d}")
    emit_s = time.perf_counter() - started
    started = time.perf_counter()
    sent = 0
    while WebhookDelivery.select().where((WebhookDelivery.subscription == sub)
                                         & (WebhookDelivery.status == "pending")).exists():
        sent += sender.deliver_due(CONFIG)
    send_s = time.perf_counter() - started
    times = [a.response_ms for a in WebhookAttempt.select(WebhookAttempt.response_ms)
             .where(WebhookAttempt.subscription == sub)]
    cuts = statistics.quantiles(times, n=100)
    print(f"{label:10} {n_events} events on {n_cards} cards: recorded {n_events / emit_s:,.0f}/s; "
          f"delivered {sent / send_s:,.0f}/s ({sent} in {send_s:.2f} s), "
          f"round trip p50 {cuts[49]:.0f} ms p99 {cuts[98]:.0f} ms, bad signatures {len(bad)}")
    server.shutdown()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--cards", type=int, default=500)
    databases.add_arguments(parser)
    args = parser.parse_args()
    for label, database in databases.each(args, "bench_webhooks"):
        run(label, database, args.events, args.cards)


if __name__ == "__main__":
    main()
