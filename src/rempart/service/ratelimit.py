"""A token bucket per API key, in each worker process.

Each worker enforces the limit on the requests it serves; with N workers behind one port a key
can reach up to N times the rate. That is the documented trade-off for needing no shared
state beyond the store.
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """``rate`` tokens per second, up to ``burst``; ``rate == 0`` disables limiting."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 if allowed, else seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                return 0.0
            self._buckets[key] = (tokens, t)
            return (1.0 - tokens) / self.rate
