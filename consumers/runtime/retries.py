"""How long to wait before trying a record again: exponential backoff with full jitter.

A retriable failure (a dependency that is down) usually hits every consumer
at once; full jitter spreads their retries so they do not return in step.

How it fails: it does not; a policy with non-positive numbers raises ValueError.
"""

from __future__ import annotations

import random

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """`attempts` tries in all (the first included); delays grow from `base` up to `cap` seconds."""

    attempts: int = 8
    base_seconds: float = 0.2
    cap_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
            raise ValueError(f"not a usable retry policy: {self}")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure (1 for the first)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (failures - 1))
        return random.uniform(0, ceiling)
