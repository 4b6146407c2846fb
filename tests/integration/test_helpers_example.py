"""``examples/enqueue_in_transaction.py`` run as a real process against a test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "enqueue_in_transaction.py"


def run_example(db_url: str, email: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), email],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_example_writes_the_user_and_the_job_together(empty_db_url: str) -> None:
    first = run_example(empty_db_url, "ada@example.com")  # installs the schema
    assert first.returncode == 0, first.stderr
    second = run_example(empty_db_url, "grace@example.com")  # adopts it
    assert second.returncode == 0, second.stderr
    assert "welcome email job" in second.stdout

    with psycopg.connect(empty_db_url) as db:
        users = db.execute("select id, email from users order by id").fetchall()
        jobs = db.execute(
            "select jobs.task_identifier, jobs.queue_name, jobs.key, jobs.max_attempts,"
            " private.payload::text"
            " from graphile_worker.jobs as jobs"
            " join graphile_worker._private_jobs as private using (id) order by id"
        ).fetchall()
    assert [email for _, email in users] == ["ada@example.com", "grace@example.com"]
    assert [(j[0], j[1], j[2], j[3]) for j in jobs] == [
        ("send_welcome_email", "mail", f"welcome:{user_id}", 5) for user_id, _ in users
    ]
    assert [json.loads(j[4]) for j in jobs] == [
        {"user_id": user_id, "email": email} for user_id, email in users
    ]


def test_a_failed_sign_up_leaves_neither_row(empty_db_url: str) -> None:
    assert run_example(empty_db_url, "ada@example.com").returncode == 0
    duplicate = run_example(empty_db_url, "ada@example.com")  # the unique email refuses it
    assert duplicate.returncode != 0
    assert "UniqueViolation" in duplicate.stderr or "unique" in duplicate.stderr.lower()
    with psycopg.connect(empty_db_url) as db:
        assert db.execute("select count(*) from users").fetchone() == (1,)
        assert db.execute("select count(*) from graphile_worker.jobs").fetchone() == (1,)
