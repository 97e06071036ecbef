"""Webhooks against a hostile portal admin (security review, each attack reproduced):
IPv6 forms that wrap a private IPv4 address, the delivery log as a map of our network,
and a receiver that trickles its answer to hold every portal's deliveries."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from api.models import WebhookAttempt, WebhookDelivery
from api.webhooks import sender, urls

NUMBER = "79161234567"


@pytest.fixture
def dns(monkeypatch):
    """Names the test decides: {host: address}."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in table:
            family = socket.AF_INET6 if ":" in table[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kwargs)
    monkeypatch.setattr(urls.socket, "getaddrinfo", fake)
    return table


@pytest.mark.parametrize("address", [
    "64:ff9b::a00:5",        # NAT64 (RFC 6052) -> 10.0.0.5
    "64:ff9b::a9fe:a9fe",    # NAT64 -> 169.254.169.254, the cloud metadata service
    "64:ff9b:1::a00:5",      # local-use NAT64 (RFC 8215): never global
    "2002:a00:5::1",         # 6to4 -> 10.0.0.5
    "::a00:5",               # IPv4-compatible -> 10.0.0.5
    "::ffff:0:a00:5",        # SIIT -> 10.0.0.5
    "fec0::1",               # site-local
    "2001:db8::1",           # documentation
])
def test_ipv6_forms_that_lead_inside_are_refused(app, dns, address):
    dns["hook.attacker.example"] = address
    with pytest.raises(urls.UnsafeUrl):
        urls.resolve("https://hook.attacker.example/x", app.config)


@pytest.mark.parametrize("address", ["2a00:1450:4010:c0e::64", "64:ff9b::808:808",
                                     "2002:808:808::1", "93.184.216.34"])
def test_public_addresses_in_any_form_still_pass(app, dns, address):
    dns["hook.example"] = address
    assert urls.resolve("https://hook.example/x", app.config).ip == address


def test_the_delivery_log_names_no_internal_address(app, api, dns):
    app.config.update(WEBHOOK_ALLOW_NETWORKS="")
    dns["postgres.internal"] = "10.20.30.40"
    internal = api.post("/api/v1/webhooks", json={"url": "https://postgres.internal/x",
                                                  "events": ["card.created"]}).get_json()
    unknown = api.post("/api/v1/webhooks", json={"url": "https://nowhere.invalid/x",
                                                 "events": ["card.created"]}).get_json()
    api.new_card(phone=NUMBER)
    sender.deliver_due(app.config)
    errors = {}
    for sub in (internal, unknown):
        items = api.get(f"/api/v1/webhooks/{sub['id']}/attempts").get_json()["items"]
        errors[sub["id"]] = items[0]["error"].split(":", 2)[-1].replace(
            "postgres.internal", "HOST").replace("nowhere.invalid", "HOST")
    assert "10.20.30.40" not in str(errors)
    assert errors[internal["id"]] == errors[unknown["id"]]  # an existing name looks like none


@pytest.fixture
def trickler():
    """A receiver that sends its headers a byte every 0.3 s, never pausing a whole second."""
    stop = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(40):  # 12 s in all
            if stop.wait(0.3):
                break
            try:
                conn.sendall(b"a")
            except OSError:
                break  # we hung up on it: that is the point
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/h"
    stop.set()
    server.close()


def test_a_trickling_receiver_is_cut_at_the_attempt_limit(app, api, trickler, monkeypatch):
    app.config.update(WEBHOOK_ALLOW_HTTP=True, WEBHOOK_ALLOW_NETWORKS="127.0.0.1/32")
    sender._pools.clear()
    monkeypatch.setattr(sender, "READ_TIMEOUT_S", 1)
    monkeypatch.setattr(sender, "ATTEMPT_MAX_S", 1.5)
    assert api.post("/api/v1/webhooks", json={"url": trickler,
                                              "events": ["card.created"]}).status_code == 201
    api.new_card(phone=NUMBER)
    started = time.monotonic()
    sender.deliver_due(app.config)
    spent = time.monotonic() - started
    assert spent < 3, f"one slow receiver held the pass for {spent:.1f} s"
    attempt = WebhookAttempt.get()
    assert attempt.status_code is None and "1.5 s" in attempt.error
    delivery = WebhookDelivery.get()
    assert delivery.status == "pending" and delivery.claimed_until is None  # retried later


def test_a_pass_fits_inside_its_claim_even_when_every_receiver_is_slow():
    rounds = -(-sender.PASS_ROWS_MAX // sender.SEND_THREADS)
    assert rounds * sender.ATTEMPT_MAX_S < sender.CLAIM_S


@pytest.mark.parametrize("sub_id", ["99999999999999999999", "2147483648"])
def test_a_subscription_id_past_the_column_is_404_not_a_500(api, sub_id):
    for method in ("GET", "DELETE"):
        response = api.client.open(f"/api/v1/webhooks/{sub_id}", method=method,
                                   headers=api.headers())
        assert response.status_code == 404, (method, response.get_json())
        assert response.get_json()["error"]["code"] == "webhook_not_found"
