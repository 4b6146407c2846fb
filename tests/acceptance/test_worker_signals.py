"""A worker in its own process, stopped with real signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

SCRIPT = Path(__file__).with_name("_signal_worker.py")


def wait_until(condition: object, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_until(process: subprocess.Popen[bytes], text: bytes) -> None:
    """Read the process's output until a line contains ``text`` (the process logs it)."""
    assert process.stdout is not None
    for line in process.stdout:
        if text in line:
            return
    raise AssertionError(f"the process ended without printing {text!r}")


@pytest.fixture
def worker_process(db_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), db_url, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def locked(db: psycopg.Connection) -> int:
    (count,) = db.execute(
        "select (select count(*) from graphile_worker._private_jobs where locked_by is not null)"
        " + (select count(*) from graphile_worker._private_job_queues"
        " where locked_by is not null)"
    ).fetchone()  # type: ignore[misc]
    return int(count)


def test_sigterm_lets_the_running_job_finish(
    db: psycopg.Connection, tmp_path: Path, worker_process: subprocess.Popen[bytes]
) -> None:
    db.execute("select graphile_worker.add_job('slow', queue_name := 'q')")
    wait_until((tmp_path / "started").exists, "the job to start")
    worker_process.send_signal(signal.SIGTERM)
    # The job is still held: the worker waits for it.
    assert locked(db) == 2
    (tmp_path / "release").touch()
    output, _ = worker_process.communicate(timeout=30)
    assert worker_process.returncode == 0, output.decode()
    assert db.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (0,)
    assert locked(db) == 0


def test_second_sigterm_fails_the_running_job(
    db: psycopg.Connection, tmp_path: Path, worker_process: subprocess.Popen[bytes]
) -> None:
    db.execute("select graphile_worker.add_job('slow', queue_name := 'q')")
    wait_until((tmp_path / "started").exists, "the job to start")
    worker_process.send_signal(signal.SIGTERM)
    # Two signals sent back to back may reach the process as one: wait for the first.
    read_until(worker_process, b"received SIGTERM")
    worker_process.send_signal(signal.SIGTERM)
    output, _ = worker_process.communicate(timeout=30)
    assert worker_process.returncode == 0, output.decode()
    attempts, last_error, locked_by = db.execute(
        "select attempts, last_error, locked_by from graphile_worker._private_jobs"
    ).fetchone()  # type: ignore[misc]
    assert attempts == 1
    assert last_error == "the worker was stopped forcefully by SIGTERM while the job ran"
    assert locked_by is None
    assert locked(db) == 0
