"""One token bucket per Bitrix24 portal, shared by every process on this host.

The portal counts requests per portal and source IP (a leaky bucket: 2 requests a second,
burst 50), so every web and worker process on the machine must draw from one bucket per
portal. The shared state is a small file per portal under an `fcntl.flock`: the kernel
serialises the read-modify-write across processes and frees the lock if a holder dies.
Sleeping happens outside every lock, so one throttled portal never stalls the others.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
import time
from typing import Callable

Bucket = tuple[float, float]  # (tokens, stamp in the limiter's clock)
BUCKET_DIR_ENV = "LOYALTY_BUCKET_DIR"


class MemoryBuckets:
    """Buckets of one process (tests, tools)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}

    def update(self, member_id: str, change: Callable[[Bucket | None], tuple[Bucket, float]]) -> float:
        with self._lock:
            bucket, answer = change(self._buckets.get(member_id))
            self._buckets[member_id] = bucket
            return answer


class FileBuckets:
    """Buckets every process of the host shares: one file per portal, read and written
    under an exclusive flock (held for microseconds)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._made = False

    def _path(self, member_id: str) -> str:
        if not self._made:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._made = True
        # member_id comes from a portal: never let it choose a path.
        return os.path.join(self.directory, hashlib.sha256(member_id.encode()).hexdigest()[:32])

    def update(self, member_id: str, change: Callable[[Bucket | None], tuple[Bucket, float]]) -> float:
        fd = os.open(self._path(member_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            bucket, answer = change(_parse(os.pread(fd, 64, 0)))
            data = f"{bucket[0]:.6f} {bucket[1]:.6f}".encode()
            os.pwrite(fd, data.ljust(64), 0)
            return answer
        finally:
            os.close(fd)  # closing drops the flock


def _parse(raw: bytes) -> Bucket | None:
    try:
        tokens, stamp = raw.split()
        return float(tokens), float(stamp)
    except ValueError:
        return None


class RateLimiter:
    """Token bucket per member_id, mirroring the portal's leaky bucket (2 req/s, burst 50).

    `acquire` takes a slot, sleeping until one is free; `wait_s` says how long the next
    slot is away without taking it (a worker yields a throttled portal instead of sleeping);
    `refused` empties the bucket when the portal answers QUERY_LIMIT_EXCEEDED, so we
    slow to the drain rate at once instead of guessing.
    """

    def __init__(self, rate_per_s: float = 2.0, burst: int = 50,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, store=None) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._store = store or MemoryBuckets()

    def acquire(self, member_id: str) -> None:
        while (wait_s := self._store.update(member_id, self._take)) > 0:
            self._sleep(wait_s)

    def wait_s(self, member_id: str) -> float:
        """Seconds until a slot is free (0: one is free now). Takes nothing."""
        return self._store.update(member_id, lambda b: self._peek(b))

    def refused(self, member_id: str) -> None:
        """The portal's bucket is full: ours is empty too, so the next call waits one drain."""
        self._store.update(member_id, lambda b: ((0.0, self._clock()), 0.0))

    def _refill(self, bucket: Bucket | None) -> Bucket:
        now = self._clock()
        tokens, stamp = bucket or (float(self.burst), now)
        stamp = min(stamp, now)  # a clock that went back (reboot, another clock) refills nothing
        return min(float(self.burst), tokens + (now - stamp) * self.rate_per_s), now

    def _take(self, bucket: Bucket | None) -> tuple[Bucket, float]:
        """Take a slot and answer 0, or answer how long to wait for one."""
        tokens, now = self._refill(bucket)
        if tokens >= 1.0:
            return (tokens - 1.0, now), 0.0
        return (tokens, now), (1.0 - tokens) / self.rate_per_s

    def _peek(self, bucket: Bucket | None) -> tuple[Bucket, float]:
        tokens, now = self._refill(bucket)
        return (tokens, now), max(0.0, (1.0 - tokens) / self.rate_per_s)


def default_directory() -> str:
    return os.environ.get(BUCKET_DIR_ENV) or os.path.join(
        tempfile.gettempdir(), f"loyalty-b24-buckets-{os.getuid()}")


# One bucket per portal for every process of this host. Wall-clock time: a monotonic
# clock is not comparable between processes on every platform.
DEFAULT_LIMITER = RateLimiter(clock=time.time, store=FileBuckets(default_directory()))


def shared() -> RateLimiter:
    """The host-wide limiter (looked up at call time, so tests can swap it)."""
    return DEFAULT_LIMITER
