"""Every log line about a job carries its id, task, queue and attempt; ``--log-format json``
writes one JSON object per line with those fields."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest

from sqlalchemy_graphile import Task, WorkerContext
from sqlalchemy_graphile.log_format import JOB_FIELDS

from ._worker_support import add, make_worker


class Chatty(Task):
    IDENTIFIER: ClassVar[str] = "chatty"
    fail: bool = False

    async def run(self, ctx: WorkerContext) -> None:
        ctx.logger.info("working on it")
        if self.fail:
            raise ValueError("no luck")


def _job_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "job_id")]


async def test_job_log_lines_carry_the_job_fields(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    ok = add(db, "chatty", "{}", queue_name="mail")
    failed = add(db, "chatty", '{"fail": true}', max_attempts=1)
    caplog.set_level(logging.INFO, logger="sqlalchemy_graphile")
    await make_worker(db_url, Chatty).run_once()
    records = _job_records(caplog)
    by_message = {(r.job_id, r.getMessage().split(" ")[0]): r for r in records}  # type: ignore[attr-defined]
    task_line = by_message[(ok, "working")]
    assert task_line.name == "sqlalchemy_graphile.task"
    assert (task_line.task, task_line.queue, task_line.attempt) == ("chatty", "mail", 1)  # type: ignore[attr-defined]
    completed = by_message[(ok, "completed")]
    assert (completed.task, completed.queue, completed.attempt) == ("chatty", "mail", 1)  # type: ignore[attr-defined]
    failure = next(r for r in records if r.job_id == failed and r.levelno == logging.ERROR)  # type: ignore[attr-defined]
    assert (failure.task, failure.queue, failure.attempt) == ("chatty", None, 1)  # type: ignore[attr-defined]
    assert failure.exc_info is not None
    # Every worker line that names a job carries the fields.
    for record in caplog.records:
        if record.name == "sqlalchemy_graphile.worker" and "job " in record.getMessage():
            assert all(hasattr(record, field) for field in JOB_FIELDS), record.getMessage()


_TASKS = """
from typing import ClassVar

from sqlalchemy_graphile import Task, WorkerContext


class Chatty(Task):
    IDENTIFIER: ClassVar[str] = "chatty"
    fail: bool = False

    async def run(self, ctx: WorkerContext) -> None:
        ctx.logger.info("working on it", extra={"step": 1})
        if self.fail:
            raise ValueError("no luck")
"""


def test_log_format_json_writes_one_object_per_line_with_the_job_fields(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "json_log_tasks.py").write_text(textwrap.dedent(_TASKS), encoding="utf-8")
    ok = add(db, "chatty", "{}", queue_name="q1")
    failed = add(db, "chatty", '{"fail": true}')
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    command = [sys.executable, "-m", "sqlalchemy_graphile", "-c", db_url, "--log-format", "json"]
    done = subprocess.run(
        [*command, "run", "--tasks", "json_log_tasks", "--once"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines, "the worker logged nothing"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    task_line = next(line for line in lines if line["message"] == "working on it")
    assert task_line["job_id"] == ok
    assert (task_line["task"], task_line["queue"], task_line["attempt"]) == ("chatty", "q1", 1)
    assert task_line["step"] == 1  # the task's own extra is kept
    completed = next(line for line in lines if line["message"].startswith("completed job"))
    assert completed["job_id"] == ok
    failure = next(line for line in lines if line["level"] == "ERROR")
    assert (failure["job_id"], failure["queue"], failure["attempt"]) == (failed, None, 1)
    assert "ValueError: no luck" in failure["exception"]
    assert list(failure)[:8] == ["time", "level", "logger", "message", *JOB_FIELDS]
