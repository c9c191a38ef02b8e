"""A per-worker token bucket, cheap enough to sit in front of every grab.

It keeps one client from monopolising a worker; it is not a global quota.
With N workers behind a balancer a client gets up to N times the rate, which
is acceptable because each grab is atomic in Redis anyway.
"""

from __future__ import annotations

import time


class TokenBuckets:
    def __init__(self, rate_per_second: float, burst: int, max_keys: int = 200_000):
        self.rate = rate_per_second
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: dict[object, tuple[float, float]] = {}

    def allow(self, key: object) -> bool:
        """Take one token for `key`; return False when its bucket is empty."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if len(self._buckets) >= self.max_keys:
            # Forgetting every bucket only ever lets a client through early.
            self._buckets.clear()
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def retry_after(self, key: object) -> float:
        """Return the seconds until `key` has a token again."""
        tokens, _ = self._buckets.get(key, (self.burst, 0.0))
        return max(0.0, (1.0 - tokens) / self.rate)
