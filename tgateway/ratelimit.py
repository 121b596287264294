"""The one token-bucket rate limiter.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second. ``KeyedLimiter``
keeps one bucket per key (client IP, file hash, ...) with a bounded number of keys: idle buckets
that are full again carry no information and are dropped first. Time is passed in (``now``), so
the same code runs under a fake clock in tests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens. Returns 0.0 when allowed, otherwise the seconds to wait."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if self.rate <= 0:
            return float("inf")
        return (cost - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class KeyedLimiter(Generic[K]):
    """One token bucket per key, at most ``max_keys`` buckets (least recently used dropped)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()
        self.refused = 0  # requests refused so far (tgateway_ratelimit_refusals_total)

    def take(self, key: K, now: float, cost: float = 1.0) -> float:
        """0.0 if the request may go ahead, else the seconds until it would be allowed."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket.full(self.rate, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._evict(now)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now, cost)
        if wait:
            self.refused += 1
        return wait

    def _evict(self, now: float) -> None:
        # Oldest first; a full bucket is equivalent to no bucket at all.
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
