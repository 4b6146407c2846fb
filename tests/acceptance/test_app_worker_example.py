"""``examples/app_worker.py`` run as a real process: it processes jobs, then exits 0 on
SIGTERM and leaves no lock behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from .._processes import reaped, terminate, wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "app_worker.py"


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
        with reaped(process):
            wait_until(lambda: not _remaining_jobs(db), process, log_path)
            status = terminate(process, log_path)
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
