"""``run --crontab``: a worker process registers and schedules the crontab's items, and a
bad crontab stops the command with a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from sqlalchemy_graphile.cli import EXIT_ERROR, main

from .._processes import reaped, terminate, wait_until
from ._cron_support import known

_TASKS = """
from typing import ClassVar

from sqlalchemy_graphile import Task, WorkerContext


class Nightly(Task):
    IDENTIFIER: ClassVar[str] = "nightly"

    async def run(self, ctx: WorkerContext) -> None:
        return None
"""


def test_a_bad_crontab_is_a_one_line_error(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cron_cli_tasks_a", raising=False)
    (tmp_path / "cron_cli_tasks_a.py").write_text(_TASKS, encoding="utf-8")
    (tmp_path / "crontab").write_text("0 3 * * * nightly\n61 3 * * * nightly ?id=late\n")
    argv = ["-c", db_url, "run", "--tasks", "cron_cli_tasks_a", "--crontab", "crontab"]
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "in the crontab file 'crontab': Too large value '61' in minutes range in line 2" in err
    assert "Traceback" not in err
    assert main([*argv[:-1], "no-such-file"]) == EXIT_ERROR
    assert "cannot read the crontab file 'no-such-file'" in capsys.readouterr().err


def test_worker_process_registers_its_crontab(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "cron_cli_tasks_b.py").write_text(_TASKS, encoding="utf-8")
    hour = (datetime.now(UTC).hour + 12) % 24  # not a time this test runs at
    (tmp_path / "crontab").write_text(f"# every day\n0 {hour} * * * nightly ?fill=1h\n")
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    log_path = tmp_path / "worker.log"
    command = [sys.executable, "-m", "sqlalchemy_graphile", "-c", db_url, "run"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--tasks", "cron_cli_tasks_b", "--crontab", "crontab"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    with reaped(process):
        wait_until(lambda: known(db), process, log_path)
        status = terminate(process, log_path)
    assert status == 0, log_path.read_text()
    ((identifier, _since, last_execution),) = known(db)
    assert (identifier, last_execution) == ("nightly", None)
