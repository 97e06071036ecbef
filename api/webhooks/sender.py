"""Delivering webhooks: in order per card, at least once, retried for a day.

- Order: a delivery is sent only when it is the oldest pending one of its subscription
  and card (`stream`); the next one waits for it (one receiver's outage holds that card's
  later events back, which keeps them in order).
- At least once: a row is claimed for CLAIM_S before the request; a worker that dies
  after sending but before recording leaves the claim to lapse, and the row is sent
  again with the same `webhook-id`, which the receiver uses to drop the repeat.
- Throughput: a pass sends its rows (at most one per card) on SEND_THREADS threads.
- Slow receivers: an attempt has ATTEMPT_MAX_S in all, however its bytes trickle in
  (deadline.py), and a pass holds at most PASS_ROWS_MAX rows, so even a pass of slow
  receivers ends well inside its rows' claim and no other worker sends them meanwhile.
- Failures: doubling waits from FIRST_RETRY_S; after GIVE_UP_S since the event the
  delivery is `failed`. A subscription with PAUSE_FAILURES failed attempts in a row over
  at least PAUSE_AFTER_S is paused (its deliveries wait) and the portal's admin is told.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import certifi
import urllib3
from peewee import fn
from urllib3.connection import HTTPConnection, HTTPSConnection

from api.clock import utcnow
from api.db import db
from api.models import (Portal, WebhookAttempt, WebhookDelivery, WebhookEvent,
                        WebhookSubscription)
from background.queue import backoff
from api.webhooks import deadline, signing, urls

log = logging.getLogger(__name__)

CLAIM_S = 60
FIRST_RETRY_S = 10
RETRY_MAX_S = 3 * 3600
GIVE_UP_S = 24 * 3600
PAUSE_FAILURES = 10
PAUSE_AFTER_S = 3600
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5, 10
ATTEMPT_MAX_S = 12
SEND_THREADS = 8
PASS_ROWS_MAX = SEND_THREADS * 4  # 4 rounds of ATTEMPT_MAX_S fit in CLAIM_S
PASSES_MAX = 50  # per call: a stream advances one delivery per pass
ERROR_BODY_MAX = 300
POOLS_MAX = 64
USER_AGENT = "loyalty-webhooks/1"

_pools: OrderedDict = OrderedDict()
_pools_lock = threading.Lock()
_threads: ThreadPoolExecutor | None = None


def deliver_due(config, *, now: datetime | None = None, limit: int = PASS_ROWS_MAX) -> int:
    """Send what is due, pass after pass while there is some; return how many were tried.

    A pass claims the due heads in one statement, POSTs them in parallel (threads do
    HTTP only, never the database) and records the pass in one transaction.
    """
    tried = 0
    for _ in range(PASSES_MAX):
        at = now or utcnow()
        rows = claim(at, min(limit, PASS_ROWS_MAX))
        if not rows:
            break
        results = _executor().map(lambda row: send(row.subscription, row.event, config), rows)
        record([(row, *result) for row, result in zip(rows, results)], now=at)
        tried += len(rows)
    return tried


def _executor() -> ThreadPoolExecutor:
    global _threads
    if _threads is None:
        _threads = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="webhook")
    return _threads


def _heads(now: datetime, limit: int):
    """The oldest pending delivery of each (active subscription, card) that is due."""
    D = WebhookDelivery
    heads = (D.select(fn.MIN(D.id)).join(WebhookSubscription)
             .where((D.status == "pending") & (WebhookSubscription.status == "active"))
             .group_by(D.subscription, D.stream))
    return (D.select(D.id).where(D.id.in_(heads) & (D.next_attempt_at <= now) & _free(now))
            .order_by(D.id).limit(limit))


def _free(now: datetime):
    return WebhookDelivery.claimed_until.is_null() | (WebhookDelivery.claimed_until < now)


def claim(now: datetime, limit: int) -> list[WebhookDelivery]:
    """Claim due heads for CLAIM_S in one statement; RETURNING says which this worker
    won, so a racing worker never takes the same row."""
    D = WebhookDelivery
    ids = [row.id for row in _heads(now, limit)]
    if not ids:
        return []
    won = [row.id for row in D.update(claimed_until=now + timedelta(seconds=CLAIM_S),
                                      attempts=D.attempts + 1).where(
        D.id.in_(ids) & (D.status == "pending") & _free(now)).returning(D.id).execute()]
    if not won:
        return []
    return list(D.select(D, WebhookEvent, WebhookSubscription).join(WebhookEvent)
                .switch(D).join(WebhookSubscription).where(D.id.in_(won)).order_by(D.id))


def body_of(event: WebhookEvent) -> bytes:
    payload = {"id": event.event_id, "type": event.type,
               "timestamp": event.created_at.isoformat(timespec="milliseconds") + "Z",
               "data": json.loads(event.data)}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def send(subscription: WebhookSubscription, event: WebhookEvent, config):
    """POST the event: (HTTP status or None, milliseconds, error text or None)."""
    started = time.monotonic()
    try:
        target = urls.resolve(subscription.url, config)
    except urls.UnsafeUrl as exc:
        return None, 0, f"unsafe_url: {exc}"
    body = body_of(event)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "Host": _host_header(target),
               **signing.headers(subscription.secret, event.event_id, int(time.time()), body)}
    with deadline.within(ATTEMPT_MAX_S) as cut:
        try:
            response = _pool(target).urlopen("POST", target.path, body=body, headers=headers,
                                             redirect=False, retries=False, preload_content=False)
            try:
                text = response.read(ERROR_BODY_MAX, decode_content=False)
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            failure = f"{type(exc).__name__}: {str(exc)[:ERROR_BODY_MAX]}"
        else:
            failure = None
    # Checked even when an answer came: a cut mid-headers can read as a short, valid one.
    if cut():
        return None, _ms(started), f"Timeout: no whole answer within {ATTEMPT_MAX_S} s"
    if failure:
        return None, _ms(started), failure
    ok = 200 <= response.status < 300
    error = None if ok else f"HTTP {response.status}: {text.decode('utf-8', 'replace')}"
    return response.status, _ms(started), error


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _host_header(target: urls.Target) -> str:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"


def _pool(target: urls.Target):
    """A kept-alive pool to the checked address; https verifies the certificate of the name."""
    key = (target.scheme, target.ip, target.port, target.host)
    with _pools_lock:
        return _pools_get(key, target)


class _Watched:
    """A connection whose socket the current attempt's deadline may cut: the raw socket as
    soon as it exists (a TLS handshake can trickle too), and on each reuse."""

    def _new_conn(self):
        sock = super()._new_conn()
        deadline.watch(sock)
        return sock

    def request(self, *args, **kwargs):
        if self.sock is not None:
            deadline.watch(self.sock)
        return super().request(*args, **kwargs)


class _WatchedHTTP(_Watched, HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


def _pools_get(key, target: urls.Target):
    pool = _pools.pop(key, None)
    if pool is None:
        timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S)
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                target.ip, target.port, timeout=timeout, maxsize=SEND_THREADS, retries=False,
                server_hostname=target.host, assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
            pool.ConnectionCls = _WatchedHTTPS
        else:
            pool = urllib3.HTTPConnectionPool(target.ip, target.port, timeout=timeout,
                                              maxsize=SEND_THREADS, retries=False)
            pool.ConnectionCls = _WatchedHTTP
    _pools[key] = pool
    while len(_pools) > POOLS_MAX:
        _pools.popitem(last=False)[1].close()
    return pool


def record(results: list[tuple], *, now: datetime) -> None:
    """Log a pass's attempts and move its deliveries and subscriptions on, in one
    transaction: (row, HTTP status, ms, error) each."""
    D = WebhookDelivery
    with db.atomic():
        WebhookAttempt.insert_many([
            {"subscription": row.subscription_id, "delivery": row.id, "at": now,
             "status_code": status, "response_ms": ms, "error": error}
            for row, status, ms, error in results]).execute()
        sent: dict[int, list[int]] = {}
        for row, status, _ms, error in results:
            if error is None:
                sent.setdefault(status, []).append(row.id)
            else:
                _failed(row, status, error, now)
        for status, ids in sent.items():
            D.update(status="sent", sent_at=now, last_status=status, last_error=None,
                     claimed_until=None).where(D.id.in_(ids)).execute()
        recovered = {row.subscription_id for row, *_rest, error in results
                     if error is None and row.subscription.failures}
        if recovered:
            WebhookSubscription.update(failures=0, failing_since=None).where(
                WebhookSubscription.id.in_(recovered)).execute()


def _failed(row: WebhookDelivery, status: int | None, error: str, now: datetime) -> None:
    D, S = WebhookDelivery, WebhookSubscription
    gave_up = now - row.created_at >= timedelta(seconds=GIVE_UP_S)
    D.update(status="failed" if gave_up else "pending", last_status=status, last_error=error,
             claimed_until=None,
             next_attempt_at=now + backoff(row.attempts, first_s=FIRST_RETRY_S,
                                           max_s=RETRY_MAX_S)).where(D.id == row.id).execute()
    S.update(failures=S.failures + 1, failing_since=fn.COALESCE(S.failing_since, now)).where(
        S.id == row.subscription_id).execute()
    _pause_if_failing(S.get_by_id(row.subscription_id), now)
    log.warning("webhook %s to subscription %s failed: %s", row.event.event_id,
                row.subscription_id, error)


def _pause_if_failing(sub: WebhookSubscription, now: datetime) -> None:
    long_enough = sub.failing_since <= now - timedelta(seconds=PAUSE_AFTER_S)
    if sub.status != "active" or sub.failures < PAUSE_FAILURES or not long_enough:
        return
    reason = (f"Приостановлена {now:%d.%m.%Y %H:%M} UTC: {sub.failures} неудачных попыток подряд "
              f"с {sub.failing_since:%d.%m.%Y %H:%M} UTC")
    WebhookSubscription.update(status="paused", paused_reason=reason, updated_at=now).where(
        WebhookSubscription.id == sub.id).execute()
    _tell_admin(sub, reason, now)


def _tell_admin(sub: WebhookSubscription, reason: str, now: datetime) -> None:
    """A chat notice to the admin who installed the app (through the outbox, like all)."""
    from api.outbox import enqueue
    from notifications import notices
    from notifications import settings as settings_mod

    log.warning("webhook subscription %s (%s) paused: %s", sub.id, sub.url, reason)
    portal = Portal.get_by_id(sub.portal_id)
    if not (portal.installed_by_user_id and portal.client_endpoint and portal.status == "active"):
        return
    text = (f"Вебхук {sub.url} приостановлен: получатель не отвечает. {reason}. Проверьте "
            "получателя и возобновите подписку в приложении, на странице «Вебхуки» "
            "(или PATCH /api/v1/webhooks/{id}, status=active).")
    row = notices.insert(portal, None, f"webhook_paused:{sub.id}:{now:%Y%m%d%H%M%S}", "chat",
                         "webhook_paused", str(portal.installed_by_user_id), None,
                         text.replace("{id}", str(sub.id)))
    call = notices.chat_call(row, settings_mod.load(portal))
    if call:
        enqueue(portal, f"webhook_paused:{row.id}", dict([call]))
