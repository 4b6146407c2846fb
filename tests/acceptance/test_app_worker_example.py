"""``examples/app_worker.py`` run as a real process: it processes jobs, then exits 0 on
SIGTERM and leaves no lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "app_worker.py"
DEADLINE_SECONDS = 60.0


def _remaining_jobs(db: psycopg.Connection) -> int:
    row = db.execute("select count(*) from graphile_worker.jobs").fetchone()
    assert row is not None
    return int(row[0])


def test_example_processes_jobs_and_stops_cleanly_on_sigterm(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    for name in ("Ada", "Grace", "Linus"):
        db.execute(
            "select graphile_worker.add_job('greet', json_build_object('name', %s::text))", (name,)
        )
    db.execute("""select graphile_worker.add_job('word_count', '{"text": "a b a"}')""")
    db.execute(
        """select graphile_worker.add_job('audit', '[{"event": "login"}, {"event": "logout"}]',"""
        " queue_name := 'audit')"
    )
    env = {**os.environ, "DATABASE_URL": db_url, "GREETING": "Howdy", "WORKER_CONCURRENCY": "2"}
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while _remaining_jobs(db) and process.poll() is None:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            assert process.poll() is None, log_path.read_text()
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=DEADLINE_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text()
    assert status == 0, output
    for name in ("Ada", "Grace", "Linus"):
        assert f"Howdy, {name}!" in output
    assert "3 words, most common: [('a', 2)]" in output
    assert "audited 2 events: login, logout" in output
    assert "worker stopped after greeting 3 people" in output
    assert "Traceback" not in output
    locks = db.execute(
        "select (select count(*) from graphile_worker._private_jobs where locked_by is not null)"
        " + (select count(*) from graphile_worker._private_job_queues"
        " where locked_by is not null)"
    ).fetchone()
    assert locks == (0,)
