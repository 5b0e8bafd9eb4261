"""A token bucket: how many frames per second a connection may send."""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float):
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._updated: float | None = None

    def allow(self, now: float) -> bool:
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
