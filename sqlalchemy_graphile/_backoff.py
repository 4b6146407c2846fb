"""Jittered exponential backoff: how long the worker's loops, the LISTEN reconnection and
the cron scheduler wait before trying again."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``min(min_delay * multiplier**k, max_delay) * (0.5 + U)``
    seconds before try ``k + 2``, with ``U`` uniform in [0, 1)."""

    min_delay: float
    max_delay: float
    multiplier: float = 1.5

    def delay(self, previous_attempts: int, uniform: float | None = None) -> float:
        u = random.random() if uniform is None else uniform
        exponent = min(previous_attempts, 200)  # far past max_delay; avoids overflow
        return min(self.min_delay * self.multiplier**exponent, self.max_delay) * (0.5 + u)
