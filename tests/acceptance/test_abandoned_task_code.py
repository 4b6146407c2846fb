"""The command line does not wait for task code that a forceful shutdown abandoned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from .test_worker_signals import locked, read_until, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("task", ["swallows_cancellation", "blocks_its_thread"])
def test_second_sigterm_exits_without_the_abandoned_task(
    db_url: str, db: psycopg.Connection, tmp_path: Path, task: str
) -> None:
    db.execute("select graphile_worker.add_job(%s)", (task,))
    command = [sys.executable, "-m", "sqlalchemy_graphile", "-c", db_url, "run", "--no-migrate"]
    process = subprocess.Popen(
        [*command, "--tasks", "tests.acceptance._stubborn_tasks", "--poll-interval", "0.1"],
        cwd=ROOT,
        env={**os.environ, "SG_STUBBORN_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until((tmp_path / "started").exists, "the job to start")
        process.send_signal(signal.SIGTERM)
        read_until(process, b"received SIGTERM")
        process.send_signal(signal.SIGTERM)
        # At most 5 s for the slots to stop, then 1 s for the abandoned code.
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, output.decode()
    assert b"task code abandoned by the forceful shutdown still runs" in output
    attempts, last_error = db.execute(
        "select attempts, last_error from graphile_worker._private_jobs"
    ).fetchone()  # type: ignore[misc]
    assert attempts == 1
    assert last_error == "the worker was stopped forcefully by SIGTERM while the job ran"
    assert locked(db) == 0
