"""The one jittered exponential backoff, used by every retry loop (job retries on the
coordinator, S3 part uploads, the agent's reconnects)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """``base * 2^(n-1)`` seconds before retry ``n`` (n >= 1), capped at ``cap``, then jittered
    over its upper half so that many waiters that failed together do not retry together, while
    none retries much sooner than the curve says."""

    base: float
    cap: float

    def ceiling(self, retry: int) -> float:
        """The most a delay before retry ``retry`` can be (before jitter)."""
        return min(self.cap, self.base * 2.0 ** max(0, retry - 1))

    def delay(self, retry: int) -> float:
        return self.ceiling(retry) * random.uniform(0.5, 1.0)
