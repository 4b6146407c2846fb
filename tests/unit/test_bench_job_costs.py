"""The per-job cost benchmark runs the worker's own slots on rows without a database."""

from __future__ import annotations

import pytest

from benchmarks.job_costs import main, run_jobs


async def test_every_job_is_completed_once() -> None:
    _seconds, completed = await run_jobs(1_234)
    assert sorted(completed) == list(range(1, 1_235))


def test_main_prints_the_cost_per_job(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--jobs", "600", "--runs", "2"])
    line = capsys.readouterr().out
    assert line.startswith("600 jobs per run on ")
    assert "us of CPU per job" in line
