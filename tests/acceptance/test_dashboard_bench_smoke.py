"""``python -m benchmarks.dashboard`` end to end with a tiny queue: every case answers, the
table and the JSON come out, and the scratch database is gone afterwards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from benchmarks import dashboard

pytestmark = pytest.mark.bench


def test_dashboard_benchmark_runs_end_to_end(
    db_url: str, db: psycopg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dashboard.json"
    status = dashboard.main(
        ["--url", db_url, "--jobs", "2000", "--repeat", "2", "--json", str(out)]
    )
    document = json.loads(out.read_text())
    names = [timing["name"] for timing in document["timings"]]
    assert "all jobs, newest first" in names
    assert "search: words, no match" in names
    assert all(timing["p50_ms"] > 0 for timing in document["timings"])
    assert status == (0 if all(t["met"] is not False for t in document["timings"]) else 1)
    assert "| all jobs, newest first |" in capsys.readouterr().out
    ours = f"sg_bench_{os.getpid()}_%"  # the scratch databases of this process
    left = db.execute("select count(*) from pg_database where datname like %s", (ours,)).fetchone()
    assert left == (0,)
