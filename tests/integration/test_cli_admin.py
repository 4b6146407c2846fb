"""The admin and schema commands against a real database, through ``main(argv)``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from sqlalchemy_graphile.cli import EXIT_ERROR, EXIT_OK, EXIT_SCHEMA_TOO_NEW, main


class Cli:
    """Runs ``main`` on one database and returns parsed ``--json`` output."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def text(self, *argv: str, status: int = EXIT_OK) -> str:
        self.capsys.readouterr()
        assert main(["-c", self.url, *argv]) == status, self.capsys.readouterr()
        captured = self.capsys.readouterr()
        return captured.out if status == EXIT_OK else captured.err

    def json(self, *argv: str) -> Any:
        return json.loads(self.text("--json", *argv))


@pytest.fixture
def cli(db_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(db_url, capsys)


def _add(db: psycopg.Connection, identifier: str, **options: Any) -> int:
    params = ", ".join(f"{name} := %({name})s" for name in options)
    sql = f"select id from graphile_worker.add_job(%(identifier)s{', ' + params if params else ''})"
    row = db.execute(sql, {"identifier": identifier, **options}).fetchone()
    assert row is not None
    return int(row[0])


def _lock(db: psycopg.Connection, job_id: int, worker: str) -> None:
    db.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = %s where id = %s",
        (worker, job_id),
    )


def test_migrate_and_check(empty_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(empty_db_url, capsys)
    assert "is not installed" in cli.text("check", status=EXIT_ERROR)
    assert cli.text("migrate").strip() == "Schema updated"
    assert cli.json("migrate") == {"schema": "graphile_worker", "installed": False, "revision": 20}
    assert "compatible" in cli.text("check")
    assert cli.json("-s", "other_jobs", "migrate")["installed"] is True
    assert cli.json("check", "-s", "other_jobs")["revision"] == 20


def test_newer_breaking_migration_exits_57(cli: Cli, db: psycopg.Connection) -> None:
    db.execute("insert into graphile_worker.migrations (id, breaking) values (21, true)")
    for argv in (("check",), ("migrate",)):
        err = cli.text(*argv, status=EXIT_SCHEMA_TOO_NEW)
        assert "breaking migration 21" in err
        assert "Traceback" not in err


def test_add_with_every_option(cli: Cli, db: psycopg.Connection) -> None:
    job = cli.json(
        "add",
        "send_email",
        "--payload",
        '{"to": "ada@example.com"}',
        "--queue",
        "mail",
        "--run-at",
        "2030-01-02T03:04:05Z",
        "--max-attempts",
        "3",
        "--priority",
        "-2",
        "--flag",
        "slow",
        "--flag",
        "external",
        "--key",
        "welcome-ada",
        "--job-key-mode",
        "preserve-run-at",
    )
    assert job["task_identifier"] == "send_email"
    assert job["payload"] == {"to": "ada@example.com"}
    row = db.execute(
        "select queue_name, run_at = '2030-01-02T03:04:05Z', max_attempts, priority, flags, key"
        " from graphile_worker.jobs where id = %s",
        (job["id"],),
    ).fetchone()
    assert row == ("mail", True, 3, -2, {"slow": True, "external": True}, "welcome-ada")
    again = cli.json("add", "send_email", "--key", "welcome-ada", "--job-key-mode", "unsafe_dedupe")
    assert again["id"] == job["id"]
    assert "Added job" in cli.text("add", "plain")


def test_add_payload_file(cli: Cli, tmp_path: Any) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('[{"user": "ada"}]', encoding="utf-8")
    assert cli.json("add", "notify", "--payload-file", str(payload))["payload"] == [{"user": "ada"}]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("add", "t", "--payload", "{not json"), "not valid JSON"),
        (("add", "t", "--payload", '{"a": NaN}'), "payload is not valid JSON"),
        (("add", "t", "--run-at", "2030-01-02T03:04:05"), "no time zone"),
        (("add", "t", "--priority", "40000"), "priority"),
        (("add", "t", "--max-attempts", "0"), "max_attempts"),
        (("add", "t", "--queue", "q" * 129), "queue_name"),
        (("add", "t" * 129), "task identifier"),
        (("add", "t", "--payload-file", "/nonexistent/payload.json"), "cannot read"),
    ],
)
def test_add_refuses_bad_input_before_sql(
    cli: Cli, db: psycopg.Connection, argv: tuple[str, ...], message: str
) -> None:
    err = cli.text(*argv, status=EXIT_ERROR)
    assert message in err
    assert err.count("\n") == 1
    assert db.execute("select count(*) from graphile_worker.jobs").fetchone() == (0,)


def test_list_filters_and_states(cli: Cli, db: psycopg.Connection) -> None:
    ready = _add(db, "a", queue_name="q1")
    scheduled = _add(db, "b", run_at="2099-01-01T00:00:00Z")
    failed = _add(db, "c", max_attempts=1)
    db.execute("update graphile_worker._private_jobs set attempts = 1 where id = %s", (failed,))
    locked = _add(db, "a", priority=-1)
    _lock(db, locked, "pool-dead")

    def ids(*argv: str) -> list[int]:
        return [job["id"] for job in cli.json("list", *argv)]

    assert ids() == [locked, ready, failed, scheduled]
    assert ids("--state", "ready") == [ready]
    assert ids("--state", "scheduled") == [scheduled]
    assert ids("--state", "locked") == [locked]
    assert ids("--state", "failed") == [failed]
    assert ids("--identifier", "a") == [locked, ready]
    assert ids("--queue", "q1") == [ready]
    assert ids("--limit", "2", "--offset", "1") == [ready, failed]
    states = {job["id"]: job["state"] for job in cli.json("list")}
    assert states == {ready: "ready", scheduled: "scheduled", failed: "failed", locked: "locked"}
    text = cli.text("list")
    assert text.splitlines()[0].split() == [
        *("id", "task", "queue", "state", "pri", "run_at", "attempts", "key", "last_error")
    ]
    assert "pool-dead" not in text  # the lock owner is for `workers`
    assert cli.text("list", "--identifier", "nothing").strip() == "No jobs."


def test_show(cli: Cli, db: psycopg.Connection) -> None:
    job_id = _add(db, "send", payload='{"to": "ada"}', job_key="k", flags=["x"])
    shown = cli.json("show", str(job_id))
    assert shown["payload"] == {"to": "ada"}
    assert (shown["key"], shown["flags"], shown["state"]) == ("k", {"x": True}, "ready")
    assert 'payload          {"to": "ada"}' in cli.text("show", str(job_id))
    assert "there is no job with id 999" in cli.text("show", "999", status=EXIT_ERROR)


def test_complete_fail_reschedule(cli: Cli, db: psycopg.Connection) -> None:
    a, b, c = _add(db, "t"), _add(db, "t"), _add(db, "t")
    _lock(db, c, "pool-busy")
    done = cli.json("complete", str(a), str(c), "424242")
    assert [job["id"] for job in done["jobs"]] == [a]
    assert done["skipped"] == [c, 424242]
    assert "Skipped (no such job, or locked by a worker): " in cli.text("complete", str(c))

    failed = cli.json("fail", str(b), "--reason", "not needed")["jobs"]
    assert [(j["id"], j["last_error"]) for j in failed] == [(b, "not needed")]
    assert db.execute(
        "select attempts = max_attempts from graphile_worker.jobs where id = %s", (b,)
    ).fetchone() == (True,)

    revived = cli.json(
        "reschedule", str(b), "--attempts", "0", "--max-attempts", "5", "--priority", "3"
    )["jobs"]
    assert [(j["attempts"], j["max_attempts"], j["priority"]) for j in revived] == [(0, 5, 3)]
    cli.json("reschedule", str(b), "--run-at", "2099-01-01T00:00:00+00:00")
    assert db.execute(
        "select run_at > now() + interval '10 years' from graphile_worker.jobs where id = %s",
        (b,),
    ).fetchone() == (True,)
    cli.json("reschedule", str(b), "--now")
    assert db.execute(
        "select run_at <= now() from graphile_worker.jobs where id = %s", (b,)
    ).fetchone() == (True,)
    assert "Rescheduled 1 job(s): " in cli.text("reschedule", str(b), "--priority", "0")
    err = cli.text("reschedule", str(b), "--priority", "99999", status=EXIT_ERROR)
    assert "priority must be between -32768 and 32767" in err


def test_remove(cli: Cli, db: psycopg.Connection) -> None:
    idle = _add(db, "t", job_key="idle")
    busy = _add(db, "t", job_key="busy")
    _lock(db, busy, "pool-busy")
    assert cli.json("remove", "idle")["id"] == idle
    assert "lost its key" in cli.text("remove", "busy")
    assert db.execute("select id, key from graphile_worker.jobs").fetchall() == [(busy, None)]
    assert "no job with key 'idle'" in cli.text("remove", "idle", status=EXIT_ERROR)


def test_force_unlock_and_workers(cli: Cli, db: psycopg.Connection) -> None:
    first, second = _add(db, "t", queue_name="q"), _add(db, "t")
    _lock(db, first, "pool-dead")
    _lock(db, second, "pool-alive")
    db.execute(
        "update graphile_worker._private_job_queues set locked_at = now(), locked_by = 'pool-dead'"
    )
    workers = cli.json("workers")
    assert [(w["worker_id"], w["locked_jobs"], w["locked_queues"]) for w in workers] == [
        ("pool-alive", 1, 0),
        ("pool-dead", 1, 1),
    ]
    assert cli.json("queues")[0]["locked_by"] == "pool-dead"
    assert "Released the locks of pool-dead" in cli.text("force-unlock", "pool-dead")
    assert [w["worker_id"] for w in cli.json("workers")] == ["pool-alive"]
    assert cli.json("queues") == [
        {"queue_name": "q", "locked_by": None, "locked_at": None, "jobs": 1}
    ]
    db.execute("update graphile_worker._private_jobs set locked_at = null, locked_by = null")
    assert cli.text("workers").strip() == "No worker is registered or holds a lock."


def test_workers_lists_registered_workers_with_heartbeat_age_and_jobs(
    cli: Cli, db: psycopg.Connection
) -> None:
    first, second = _add(db, "t"), _add(db, "t", queue_name="q")
    db.execute(
        """select graphile_worker.worker_heartbeat('sgpool-alive',"""
        """ '{"hostname": "web-1", "pid": 4242}')"""
    )
    db.execute("select graphile_worker.worker_heartbeat('sgpool-idle')")
    db.execute(
        "update graphile_worker._private_workers set last_heartbeat_at = now() - interval '90 s'"
        " where id = 'sgpool-idle'"
    )
    _lock(db, first, "sgpool-alive")
    _lock(db, second, "sgpool-alive")
    db.execute(
        "update graphile_worker._private_job_queues"
        " set locked_at = now(), locked_by = 'sgpool-alive'"
    )
    third = _add(db, "t")
    _lock(db, third, "pool-node")
    listed = {w["worker_id"]: w for w in cli.json("workers")}
    assert list(listed) == ["pool-node", "sgpool-alive", "sgpool-idle"]
    alive = listed["sgpool-alive"]
    assert (alive["registered"], alive["host"], alive["pid"]) == (True, "web-1", 4242)
    assert (alive["locked_jobs"], alive["job_ids"], alive["locked_queues"]) == (
        2,
        [first, second],
        1,
    )
    assert 0 <= alive["heartbeat_age"] < 60
    assert 89 <= listed["sgpool-idle"]["heartbeat_age"] < 150
    assert listed["sgpool-idle"]["job_ids"] == []
    node = listed["pool-node"]
    assert (node["registered"], node["heartbeat_age"], node["job_ids"]) == (False, None, [third])
    text = cli.text("workers")
    assert "not registered" in text
    assert "web-1" in text


def test_stats(cli: Cli, db: psycopg.Connection) -> None:
    _add(db, "t", queue_name="mail")
    _add(db, "t", queue_name="mail", run_at="2099-01-01T00:00:00Z")
    _add(db, "t")
    stats = cli.json("stats")
    assert stats["jobs"] == {
        "total": 3,
        "ready": 2,
        "scheduled": 1,
        "locked": 0,
        "failed": 0,
        "unhandled": 0,  # ready for less than --unhandled-after (300 s)
    }
    assert stats["queues"] == [
        {"queue_name": "mail", "total": 2, "ready": 1, "scheduled": 1, "locked": 0, "failed": 0}
    ]
    assert stats["unhandled"] == []
    assert cli.text("stats").startswith("Jobs: total 3, ready 2, scheduled 1")


def test_cleanup(cli: Cli, db: psycopg.Connection) -> None:
    dead = _add(db, "gone", queue_name="old", max_attempts=1)
    db.execute("update graphile_worker._private_jobs set attempts = 1 where id = %s", (dead,))
    _add(db, "kept")
    assert cli.json("cleanup", "gc-job-queues") == {"gc-job-queues": 0}
    assert cli.json("cleanup") == {
        "delete-permanently-failed-jobs": 1,
        "gc-task-identifiers": 1,
        "gc-job-queues": 1,
    }
    tasks = db.execute("select identifier from graphile_worker._private_tasks").fetchall()
    assert tasks == [("kept",)]


def test_commands_as_a_subprocess(db_url: str, db: psycopg.Connection) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATABASE_URL"] = db_url

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sqlalchemy_graphile", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    added = run("add", "hello", "--payload", '{"name": "Ada"}', "--json")
    assert added.returncode == 0, added.stderr
    job_id = json.loads(added.stdout)["id"]
    listed = run("list", "--json")
    assert [job["id"] for job in json.loads(listed.stdout)] == [job_id]
    bad = run("list", "--no-such-flag")
    assert bad.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in bad.stderr
    refused = run("-c", "postgresql://postgres@127.0.0.1:1/nothing", "stats")
    assert refused.returncode == 1
    assert refused.stderr.startswith("sqlalchemy-graphile: error: ")
    assert "Traceback" not in refused.stderr


def test_sweep_stale_workers(cli: Cli, db: psycopg.Connection) -> None:
    job_id = _add(db, "t", queue_name="q")
    _lock(db, job_id, "sgpool-dead")
    db.execute(
        "update graphile_worker._private_job_queues"
        " set locked_at = now(), locked_by = 'sgpool-dead'"
    )
    db.execute("select graphile_worker.worker_heartbeat('sgpool-dead')")
    db.execute(
        "update graphile_worker._private_workers set last_heartbeat_at = now() - interval '1 hour'"
    )
    dry = cli.json("sweep-stale-workers", "--dry-run", "--sweep-threshold", "60")
    assert dry == {
        "swept": True,
        "dry_run": True,
        "dead_workers": ["sgpool-dead"],
        "orphans": [],
        "jobs": {"sgpool-dead": [job_id]},
        "queues_unlocked": 1,
    }
    text = cli.text("sweep-stale-workers", "--dry-run")
    assert "Would recover 1 job(s) and 1 queue lock(s) from 1 worker(s)" in text
    assert "sgpool-dead  stale heartbeat" in text
    assert "Recovered 1 job(s)" in cli.text("sweep-stale-workers", "--recovery-delay", "5")
    assert cli.text("sweep-stale-workers").strip() == "No dead workers"
    row = db.execute(
        "select locked_by, attempts, run_at > now() from graphile_worker._private_jobs"
    ).fetchone()
    assert row == (None, 0, True)
    cli.text("sweep-stale-workers", "--sweep-threshold", "0", status=2)
