"""Slowing down password guessing on the login form.

Failed logins are counted per client address and per user name in a sliding window; past
the limit, the form answers 429 until the oldest failure leaves the window. Per process
(like the API's rate limiter): with N workers an attacker gets at most N times the budget,
which Argon2's cost per guess keeps small anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Final

#: Failures allowed per window, per client address and per user name.
MAX_FAILURES_PER_IP: Final = 10
MAX_FAILURES_PER_USER: Final = 5
WINDOW_S: Final = 15 * 60.0


class LoginLimiter:
    """Sliding-window counters of failed logins."""

    def __init__(
        self,
        per_ip: int = MAX_FAILURES_PER_IP,
        per_user: int = MAX_FAILURES_PER_USER,
        window_s: float = WINDOW_S,
    ) -> None:
        self._limits = {"ip": per_ip, "user": per_user}
        self._window = window_s
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self._window:
            q.popleft()
        return q

    def wait_s(self, ip: str, username: str) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for kind, value in (("ip", ip), ("user", username.lower())):
                q = self._recent((kind, value), now)
                if len(q) >= self._limits[kind]:
                    wait = max(wait, self._window - (now - q[0]))
        return wait

    def failed(self, ip: str, username: str) -> None:
        """Count a failed attempt."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 100_000:  # bounded memory under a spray of names
                self._failures.clear()
            for key in (("ip", ip), ("user", username.lower())):
                self._recent(key, now).append(now)

    def succeeded(self, username: str) -> None:
        """Forget the user name's failures after a good login."""
        with self._lock:
            self._failures.pop(("user", username.lower()), None)
