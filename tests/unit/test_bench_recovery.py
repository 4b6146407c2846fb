"""The recovery latency benchmark's summary and arguments (the run itself is in the docs)."""

from __future__ import annotations

import pytest

from benchmarks.recovery_latency import parse_args, summarize


def test_summary_of_latencies() -> None:
    latencies = [float(n) for n in range(1, 21)]  # 1 .. 20 s
    assert summarize(latencies) == {
        "min": 1.0,
        "median": 10.5,
        "p90": 18.0,
        "max": 20.0,
        "mean": 10.5,
    }
    assert summarize([2.5]) == {"min": 2.5, "median": 2.5, "p90": 2.5, "max": 2.5, "mean": 2.5}


def test_defaults_are_the_fast_settings() -> None:
    args = parse_args([])
    assert (args.kills, args.heartbeat_interval, args.sweep_threshold, args.sweep_interval) == (
        20,
        1.0,
        3.0,
        1.0,
    )
    with pytest.raises(SystemExit):
        parse_args(["--kills", "0"])
