"""``sqlalchemy-graphile demo`` end to end, as a subprocess against the test server."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

_EXPECTED_LINES = [
    "Hello, Ada!",
    "Hello, Grace!",
    "fibonacci(90) = 2880067194370816120",
    "uploading report.pdf failed; retried in about 3 s",
    "uploaded report.pdf on the retry",
    "notified 3 users in one job: ada, grace, linus",
    "sent the receipt for order 1001 (queue receipts)",
    "sent the receipt for order 1003 (queue receipts)",
]


def test_demo_runs_its_jobs_and_exits_zero(
    empty_db_url: str, postgresql_empty: psycopg.Connection
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "sqlalchemy_graphile", "-c", empty_db_url, "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith(f"Database: using {empty_db_url}\n")
    assert "Schema 'graphile_worker': installed" in out
    for line in _EXPECTED_LINES:
        assert line in out, out
    # The named queue runs its jobs one at a time, in order.
    receipts = [line for line in out.splitlines() if "sent the receipt" in line]
    assert [r.split("order ")[1][:4] for r in receipts] == ["1001", "1002", "1003"]
    assert out.rstrip().endswith("Done: 8 of 8 demo jobs completed.")
    assert "Traceback" not in result.stderr
    postgresql_empty.rollback()
    remaining = postgresql_empty.execute(
        "select count(*), count(*) filter (where locked_by is not null)"
        " from graphile_worker._private_jobs"
    ).fetchone()
    assert remaining == (0, 0)
