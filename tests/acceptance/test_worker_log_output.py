"""A worker started from code prints its start, job and stop lines when the application has
not configured logging, and leaves an application's own logging set-up alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

_PROGRAM = """
import asyncio
import logging
import sys
from typing import ClassVar

from sqlalchemy_graphile import Task, Worker, WorkerContext

{logging_setup}


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        ctx.logger.info("sending to %s", self.to)


asyncio.run(Worker(sys.argv[1], tasks=[SendEmail], concurrency=2).run_once())
ours = logging.getLogger("sqlalchemy_graphile")
print("after the run:", len(ours.handlers), logging.getLevelName(ours.level))
"""


def _run(db_url: str, db: psycopg.Connection, tmp_path: Path, logging_setup: str) -> str:
    """Run a program that runs one job with ``Worker.run_once()``; return its stderr."""
    db.execute("""select graphile_worker.add_job('send_email', '{"to": "ada@example.com"}')""")
    program = tmp_path / "app.py"
    program.write_text(textwrap.dedent(_PROGRAM.format(logging_setup=logging_setup)))
    result = subprocess.run(
        [sys.executable, str(program), db_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "after the run: 0 NOTSET\n", result.stdout + result.stderr
    remaining = db.execute("select count(*) from graphile_worker.jobs").fetchone()
    assert remaining == (0,), result.stderr
    return result.stderr


def test_without_logging_set_up_the_worker_prints_what_the_command_line_prints(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    lines = _run(db_url, db, tmp_path, "").splitlines()
    expected = [
        "INFO    sqlalchemy_graphile.worker: worker sgotpool-",  # started with ...
        "INFO    sqlalchemy_graphile.task: sending to ada@example.com",
        "INFO    sqlalchemy_graphile.worker: completed job ",
        "INFO    sqlalchemy_graphile.worker: worker sgotpool-",  # stopped
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line[24:].startswith(start), lines  # after the time stamp
    assert "started with 1 task type(s) (send_email), concurrency 2" in lines[0]
    assert lines[-1].endswith(": stopped")


@pytest.mark.parametrize(
    ("logging_setup", "expected"),
    [
        ("logging.basicConfig(level=logging.WARNING)", ""),
        (
            'logging.basicConfig(level=logging.INFO, format="app: %(name)s %(message)s")',
            "app: sqlalchemy_graphile.task sending to ada@example.com\n",
        ),
    ],
    ids=["warnings only", "info in the app's format"],
)
def test_an_application_s_logging_set_up_is_left_alone(
    db_url: str, db: psycopg.Connection, tmp_path: Path, logging_setup: str, expected: str
) -> None:
    stderr = _run(db_url, db, tmp_path, logging_setup)
    task_lines = "".join(line + "\n" for line in stderr.splitlines() if "sending to" in line)
    assert task_lines == expected, stderr
    assert all(line.startswith("app: ") for line in stderr.splitlines()), stderr
