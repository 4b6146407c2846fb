"""Ready jobs that no worker handles: the worker warns at start-up and then periodically,
``handled_elsewhere`` silences an identifier, and ``stats`` / ``list`` show them."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import asyncpg
import psycopg
import pytest
from pydantic import ValidationError

from sqlalchemy_graphile import ConfigurationError
from sqlalchemy_graphile.cli import EXIT_OK, main
from sqlalchemy_graphile.cli._common import DEFAULT_UNHANDLED_AFTER
from sqlalchemy_graphile.worker._options import DEFAULT_UNHANDLED_INTERVAL
from sqlalchemy_graphile.worker._unhandled import UnhandledJobsCheck

from ._worker_support import Job2, Recorder, make_worker


def _add(db: psycopg.Connection, identifier: str, *, count: int = 1, **options: Any) -> None:
    params = "".join(f", {name} := %({name})s" for name in options)
    for _ in range(count):
        db.execute(
            f"select graphile_worker.add_job(%(identifier)s{params})",
            {"identifier": identifier, **options},
        )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sqlalchemy_graphile.worker" and r.levelno == logging.WARNING
    ]


async def test_run_once_names_unhandled_identifiers_with_counts(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    _add(db, "send_emial", count=2)
    _add(db, "resize")
    _add(db, "job2")  # ours: runs, never reported
    _add(db, "later", run_at="2999-01-01T00:00:00Z")  # not ready
    _add(db, "hopeless", max_attempts=1)
    db.execute("update graphile_worker._private_jobs set attempts = 1 where max_attempts = 1")
    rec = Recorder()
    await make_worker(db_url, Job2, rec=rec).run_once()
    assert rec.seen("job2") == [{}]
    [warning] = _warnings(caplog)
    assert warning.startswith(
        "3 ready job(s) are waiting for task identifiers that this worker does not handle "
        "and of which no worker is running a job: 'resize' (1 jobs), 'send_emial' (2 jobs). "
    )
    assert "handled_elsewhere" in warning


async def test_handled_elsewhere_and_locks_silence_it(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    _add(db, "node_sms", count=3)
    _add(db, "busy", count=2)
    _add(db, "queued", queue_name="q")
    # One `busy` job is running on some other worker, and queue `q` is held by another job:
    # something is taking care of both.
    db.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'other'"
        " where id = (select min(id) from graphile_worker.jobs where task_identifier = 'busy')"
    )
    db.execute("update graphile_worker._private_job_queues set locked_at = now(), locked_by = 'x'")
    worker = make_worker(db_url, Job2, handled_elsewhere=["node_sms"])
    await worker.run_once()
    assert _warnings(caplog) == []
    await make_worker(db_url, Job2, unhandled_jobs_interval=None).run_once()
    assert _warnings(caplog) == []
    await make_worker(db_url, Job2).run_once()
    [warning] = _warnings(caplog)
    assert "job(s) are waiting for task identifiers" in warning
    assert ": 'node_sms' (3 jobs). " in warning


async def test_after_start_up_only_jobs_waiting_longer_than_the_interval_count(
    db_url: str, db: psycopg.Connection
) -> None:
    _add(db, "fresh")
    db.execute("select graphile_worker.add_job('stale', run_at := now() - interval '1 hour')")
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    try:
        check = UnhandledJobsCheck(
            pool=pool,
            schema="graphile_worker",
            handled=["job2"],
            interval=600,
            continuous=True,
            pool_id="sgpool-test",
        )
        assert [e.identifier for e in await check.run_once(min_wait=0)] == ["fresh", "stale"]
        assert [e.identifier for e in await check.run_once(min_wait=600)] == ["stale"]
    finally:
        await pool.close()


class _Counter(logging.Handler):
    """Counts the warnings about unhandled jobs; sets an event at ``target``."""

    def __init__(self, target: int) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.target = target
        self.reached = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "no worker is running a job" in record.getMessage():
            self.count += 1
            if self.count >= self.target:
                self.reached.set()


async def test_a_running_worker_warns_again_once_per_interval(
    db_url: str, db: psycopg.Connection
) -> None:
    db.execute("select graphile_worker.add_job('stale', run_at := now() - interval '1 hour')")
    counter = _Counter(target=3)
    logger = logging.getLogger("sqlalchemy_graphile.worker")
    logger.addHandler(counter)
    try:
        async with make_worker(db_url, Job2, unhandled_jobs_interval=0.05):
            async with asyncio.timeout(30):
                await counter.reached.wait()
    finally:
        logger.removeHandler(counter)
    assert counter.count >= 3


@pytest.mark.parametrize(
    "options",
    [
        {"handled_elsewhere": "node_sms"},
        {"handled_elsewhere": [""]},
        {"handled_elsewhere": [1]},
        {"unhandled_jobs_interval": 0},
        {"unhandled_jobs_interval": "5"},
    ],
)
def test_bad_options(db_url: str, options: dict[str, Any]) -> None:
    with pytest.raises((ConfigurationError, ValidationError)):
        make_worker(db_url, Job2, **options)


def test_the_command_line_s_default_is_the_worker_s() -> None:
    assert DEFAULT_UNHANDLED_AFTER == DEFAULT_UNHANDLED_INTERVAL


def _cli(db_url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(["-c", db_url, *argv]) == EXIT_OK
    return capsys.readouterr().out


def test_stats_and_list_show_unhandled_jobs(
    db_url: str, db: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(db, "send_emial", count=2)
    _add(db, "fresh")
    db.execute("update graphile_worker._private_jobs set run_at = now() - interval '1 hour'")
    _add(db, "fresh")
    _add(db, "recent")
    stats = json.loads(_cli(db_url, capsys, "stats", "--json", "--unhandled-after", "60"))
    assert stats["jobs"]["ready"] == 5
    assert stats["jobs"]["unhandled"] == 4
    assert [(e["identifier"], e["ready"]) for e in stats["unhandled"]] == [
        ("fresh", 2),
        ("send_emial", 2),
    ]
    text = _cli(db_url, capsys, "stats", "--unhandled-after", "60")
    assert "Unhandled: ready jobs of tasks no worker seems to handle" in text
    assert "oldest ready for over 60 s" in text
    listed = json.loads(_cli(db_url, capsys, "list", "--json", "--unhandled-after", "60"))
    states = {(job["task_identifier"], job["state"]) for job in listed}
    assert states == {("send_emial", "unhandled"), ("fresh", "unhandled"), ("recent", "ready")}
    unhandled = json.loads(
        _cli(db_url, capsys, "list", "--json", "--state", "unhandled", "--unhandled-after", "60")
    )
    assert len(unhandled) == 4
    ready = json.loads(
        _cli(db_url, capsys, "list", "--json", "--state", "ready", "--unhandled-after", "60")
    )
    assert len(ready) == 5  # unhandled jobs are ready jobs
    later = ["--unhandled-after", "1e9"]
    assert json.loads(_cli(db_url, capsys, "list", "--json", "--state", "unhandled", *later)) == []
    assert "unhandled" not in _cli(db_url, capsys, "list", *later)
    assert "Unhandled" not in _cli(db_url, capsys, "stats", *later)
