"""``python -m benchmarks`` end to end with tiny sizes: both workers, every row, no leftovers.

Needs Node.js and npm (the first run installs graphile-worker 0.17 into the user's cache).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.bench,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="the benchmark compares against Node graphile-worker: needs node and npm",
    ),
]


def _expected_keys(mode: str) -> set[str]:
    return {
        "startup_ms",
        "enqueue_rate",
        f"throughput.{mode}.p1",
        f"peak_rss.{mode}.p1",
        *(f"latency.{mode}.{stat}" for stat in ("p50", "p99", "max")),
    }


@pytest.mark.parametrize("mode", ["unbatched", "batched"])
def test_benchmark_runs_end_to_end(
    mode: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        *("--jobs", "200", "--processes", "1", "--concurrency", "4", "--modes", mode),
        *("--latency-samples", "20", "--latency-warmup", "5"),
        *("--json", str(out), "--database-url", db_url, "--timeout", "60"),
    ]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        stdout, stderr = process.communicate(timeout=110)
    assert process.returncode == 0, stderr

    document = json.loads(out.read_text())
    rows = {row["key"]: row for row in document["rows"]}
    assert set(rows) == _expected_keys(mode)
    assert document["failures"] == []
    for row in rows.values():
        assert row["ours"] > 0, row
        assert row["node"] > 0, row
        assert row["ours_vs_node"] > 0, row
    assert document["config"]["jobs"] == 200
    assert document["machine"]["graphile-worker"].startswith("0.17.")
    assert document["machine"]["postgresql"]
    assert len(document["details"]["ours"]["enqueue"]) == 1
    assert len(document["details"]["node"]["enqueue"]) == 1

    table = stdout.splitlines()
    assert table[0].split()[:4] == ["metric", "unit", "ours", "Node"]
    assert len(table) == 2 + len(rows) + 1  # header, rule, rows, note

    # Every scratch database was dropped.
    leftovers = db.execute(
        "select datname from pg_database where datname like %s",
        (f"sg_bench_{process.pid}_%",),
    ).fetchall()
    assert leftovers == []


def test_soak_reports_rss_at_both_points(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    out = tmp_path / "soak.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        *("--soak", "3000", "--soak-baseline", "1000", "--concurrency", "4"),
        *("--json", str(out), "--database-url", db_url, "--timeout", "30"),
    ]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        stdout, stderr = process.communicate(timeout=110)
    assert process.returncode == 0, stderr

    soak = json.loads(out.read_text())["soak"]
    assert soak["baseline_jobs"] >= 1000
    assert soak["final_jobs"] == 3000
    assert soak["baseline_rss_mib"] > 0
    assert soak["final_rss_mib"] > 0
    assert soak["peak_rss_mib"] >= soak["final_rss_mib"]
    assert "change:" in stdout
    leftovers = db.execute(
        "select datname from pg_database where datname like %s",
        (f"sg_bench_{process.pid}_%",),
    ).fetchall()
    assert leftovers == []
