"""Signatures a receiver can check (Standard Webhooks, https://www.standardwebhooks.com):

    webhook-id: evt_…        webhook-timestamp: 1767225600
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>

where key is the base64 part of the secret after "whsec_". For receivers built on the
Stripe scheme the same request also carries
`Loyalty-Signature: t=<timestamp>,v1=<hex HMAC-SHA256(key, "{timestamp}.{body}")>`.
A receiver drops a timestamp older than a few minutes (replays) and an id it has seen.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def _mac(secret: str, content: bytes) -> bytes:
    return hmac.new(_key(secret), content, hashlib.sha256).digest()


def headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    standard = _mac(secret, f"{event_id}.{timestamp}.".encode() + body)
    stripe = _mac(secret, f"{timestamp}.".encode() + body)
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(standard).decode(),
            "Loyalty-Signature": f"t={timestamp},v1={stripe.hex()}"}


def verify(secret: str, got: dict[str, str], body: bytes, now_s: int) -> bool:
    """The receiver's check (tests, docs): a valid v1 signature and a fresh timestamp."""
    try:
        timestamp = int(got["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(now_s - timestamp) > TOLERANCE_S:
        return False
    expected = headers(secret, got.get("webhook-id", ""), timestamp, body)["webhook-signature"]
    offered = got.get("webhook-signature", "").split(" ")
    return any(hmac.compare_digest(expected, sig) for sig in offered)
