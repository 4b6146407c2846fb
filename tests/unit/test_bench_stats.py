"""The benchmark's arithmetic: percentiles, latency summaries, ratios, units."""

from __future__ import annotations

import pytest

from benchmarks._stats import (
    MIB,
    LatencySummary,
    advantage,
    maxrss_bytes,
    percent_change,
    percentile,
    rate,
)


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, 1), (0.01, 1), (0.5, 50), (0.99, 99), (0.995, 100), (1.0, 100)],
)
def test_percentile_is_nearest_rank(fraction: float, expected: int) -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, fraction) == expected


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([3.5], 0.5) == 3.5
    assert percentile([3.5], 0.99) == 3.5


def test_percentile_rejects_empty_input_and_bad_fractions() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 1.5)
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], -0.1)


def test_latency_summary() -> None:
    samples = [float(v) for v in range(1, 201)]  # 1..200 ms
    summary = LatencySummary.of(samples)
    assert summary == LatencySummary(
        samples=200, min_ms=1.0, p50_ms=100.0, p99_ms=198.0, max_ms=200.0, mean_ms=100.5
    )


def test_latency_summary_needs_samples() -> None:
    with pytest.raises(ValueError, match="no latency samples"):
        LatencySummary.of([])


def test_advantage_is_ours_over_node_for_rates() -> None:
    assert advantage(200.0, 100.0, higher_is_better=True) == 2.0
    assert advantage(50.0, 100.0, higher_is_better=True) == 0.5


def test_advantage_is_node_over_ours_for_times() -> None:
    assert advantage(2.0, 4.0, higher_is_better=False) == 2.0  # ours twice as fast
    assert advantage(8.0, 4.0, higher_is_better=False) == 0.5


@pytest.mark.parametrize(
    ("ours", "node", "higher"),
    [
        (None, 1.0, True),
        (1.0, None, True),
        (None, None, False),
        (1.0, 0.0, True),
        (0.0, 1.0, False),
    ],
)
def test_advantage_is_none_when_undefined(
    ours: float | None, node: float | None, higher: bool
) -> None:
    assert advantage(ours, node, higher_is_better=higher) is None


def test_rate() -> None:
    assert rate(20_000, 2.0) == 10_000.0
    with pytest.raises(ValueError, match="positive"):
        rate(1, 0.0)


def test_maxrss_units() -> None:
    assert maxrss_bytes(1024, "linux") == MIB
    assert maxrss_bytes(MIB, "darwin") == MIB


def test_percent_change() -> None:
    assert percent_change(100.0, 110.0) == pytest.approx(10.0)
    assert percent_change(100.0, 95.0) == pytest.approx(-5.0)
    with pytest.raises(ValueError, match="positive"):
        percent_change(0.0, 1.0)
