"""Pure arithmetic for the report: percentiles, latency summaries, ratios and units."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIB = 1024 * 1024


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in [0, 1]).

    The smallest value such that at least ``fraction`` of the values are less than or equal
    to it: p50 of 1..100 is 50, p99 is 99, p100 is the maximum. Raises ``ValueError`` for an
    empty sequence or a fraction outside [0, 1].
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], not {fraction!r}")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    """add->start latency of a series of samples, in milliseconds."""

    samples: int
    min_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> LatencySummary:
        """Summarise the samples; ``ValueError`` if there are none."""
        if not samples_ms:
            raise ValueError("no latency samples")
        return cls(
            samples=len(samples_ms),
            min_ms=min(samples_ms),
            p50_ms=percentile(samples_ms, 0.50),
            p99_ms=percentile(samples_ms, 0.99),
            max_ms=max(samples_ms),
            mean_ms=math.fsum(samples_ms) / len(samples_ms),
        )


def advantage(ours: float | None, node: float | None, *, higher_is_better: bool) -> float | None:
    """How many times better ours is than Node's: above 1 means ours is better.

    ``ours / node`` for rates (higher is better), ``node / ours`` for times and sizes (lower
    is better). ``None`` when either side is missing or the division is undefined.
    """
    if ours is None or node is None:
        return None
    numerator, denominator = (ours, node) if higher_is_better else (node, ours)
    if denominator <= 0 or numerator < 0:
        return None
    return numerator / denominator


def rate(count: int, seconds: float) -> float:
    """``count / seconds``; ``ValueError`` for a non-positive duration."""
    if seconds <= 0:
        raise ValueError(f"duration must be positive, not {seconds!r}")
    return count / seconds


def maxrss_bytes(ru_maxrss: int, platform: str) -> int:
    """Convert ``ru_maxrss`` from ``getrusage``/``wait4`` to bytes.

    Linux reports kibibytes, macOS bytes.
    """
    return ru_maxrss if platform == "darwin" else ru_maxrss * 1024


def percent_change(before: float, after: float) -> float:
    """The change from ``before`` to ``after`` in percent of ``before``."""
    if before <= 0:
        raise ValueError(f"baseline must be positive, not {before!r}")
    return (after - before) / before * 100.0
