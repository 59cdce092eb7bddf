"""A token bucket per API key, in each worker process.

Each worker enforces the limit on the requests it serves; with N workers behind one port a key
can reach up to N times the rate. That is the documented trade-off for needing no shared
state beyond the store.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class RateLimiter:
    """``rate`` tokens per second, up to ``burst``; ``rate == 0`` disables limiting.

    Keys may come from the network (client addresses), so the buckets are bounded: a bucket
    that has refilled is the same as no bucket and is dropped, oldest first; past
    ``max_keys`` the least recently used is dropped even if not full (that key then starts
    again with a full burst -- the price of bounded memory under a flood of addresses).
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0.0 if allowed, else seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, t)  # now the most recently used
            self._evict(t)
            return wait

    def _evict(self, t: float) -> None:
        # Least recently used first: drop while the oldest bucket has refilled, or while
        # there are too many.
        while self._buckets:
            tokens, last = next(iter(self._buckets.values()))
            full = tokens + (t - last) * self.rate >= self.burst
            if not full and len(self._buckets) <= self.max_keys:
                return
            self._buckets.popitem(last=False)
