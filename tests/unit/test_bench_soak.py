"""The soak report: RSS at the baseline and at the end, and the change in percent."""

from __future__ import annotations

import json

import pytest

from benchmarks._soak import SoakPlan, SoakResult, format_soak
from benchmarks._stats import MIB

PLAN = SoakPlan(
    total=1_000_000, baseline=100_000, concurrency=24, mode="unbatched", stall_timeout=60
)


def _result(before_mib: float, after_mib: float) -> SoakResult:
    return SoakResult(
        baseline_jobs=100_250,
        baseline_rss=int(before_mib * MIB),
        final_jobs=1_000_000,
        final_rss=int(after_mib * MIB),
        peak_rss=int(max(before_mib, after_mib) * MIB),
        seconds=512.0,
    )


def test_flat_memory() -> None:
    result = _result(80.0, 84.0)
    assert result.change_percent == pytest.approx(5.0)
    figures = result.as_json()
    assert figures["within_target"] is True
    assert figures["baseline_rss_mib"] == pytest.approx(80.0)
    assert figures["final_rss_mib"] == pytest.approx(84.0)
    assert figures["baseline_jobs"] == 100_250
    json.dumps(figures, allow_nan=False)
    text = format_soak(PLAN, result)
    assert "RSS after 100,250 jobs: 80.0 MiB" in text
    assert "RSS after 1,000,000 jobs: 84.0 MiB" in text
    assert "change: +5.0 % (flat; target within +/-10 %)" in text


@pytest.mark.parametrize(("after", "sign"), [(100.0, "+25.0"), (60.0, "-25.0")])
def test_growth_or_shrinkage_beyond_the_target(after: float, sign: str) -> None:
    result = _result(80.0, after)
    assert result.as_json()["within_target"] is False
    assert f"change: {sign} % (NOT flat" in format_soak(PLAN, result)
