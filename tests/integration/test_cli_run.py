"""``run`` against a real database: task modules, ``--once``, schema handling, exit codes,
and a continuous worker process stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sqlalchemy_graphile.cli import EXIT_ERROR, EXIT_OK, EXIT_SCHEMA_TOO_NEW, main

from .._processes import DEADLINE_SECONDS, reaped, terminate, wait_until

SCRIPT = Path(sys.executable).parent / "sqlalchemy-graphile"

_TASKS = """
import threading
from typing import ClassVar

from sqlalchemy_graphile import BatchTask, Task
from sqlalchemy_graphile.context import WorkerContext

SEEN: list[str] = []
_lock = threading.Lock()


class Shout(Task):
    IDENTIFIER: ClassVar[str] = "shout"
    word: str

    async def run(self, ctx: WorkerContext) -> None:
        SEEN.append(self.word.upper())


class Count(Task):
    IDENTIFIER: ClassVar[str] = "count"
    n: int

    def run(self, ctx: WorkerContext) -> None:
        with _lock:
            SEEN.append(f"count {self.n} in {threading.current_thread().name}")


class Boom(Task):
    IDENTIFIER: ClassVar[str] = "boom"

    async def run(self, ctx: WorkerContext) -> None:
        raise ValueError("kaboom")


class Collect(BatchTask):
    IDENTIFIER: ClassVar[str] = "collect"
    item: str

    @classmethod
    async def run_batch(cls, items, ctx):
        SEEN.append("+".join(i.item for i in items))


def only_shout():
    return [Shout]
"""


@pytest.fixture
def tasks_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """Write the test task module under a unique name; returns a function that gives the
    imported module (after ``run`` imported it) by name."""
    monkeypatch.chdir(tmp_path)

    def make(name: str) -> Any:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(_TASKS), encoding="utf-8")
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return make


def _jobs(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return db.execute(
        "select task_identifier, attempts, last_error from graphile_worker.jobs order by id"
    ).fetchall()


def _add(db: psycopg.Connection, identifier: str, payload: str, **options: Any) -> None:
    params = "".join(f", {name} := %({name})s" for name in options)
    db.execute(
        f"select graphile_worker.add_job(%(identifier)s, %(payload)s::json{params})",
        {"identifier": identifier, "payload": payload, **options},
    )


def test_run_once_runs_a_module_s_tasks(
    db_url: str, db: psycopg.Connection, tasks_module: Callable[[str], Any]
) -> None:
    name = tasks_module("cli_run_tasks_a")
    _add(db, "shout", '{"word": "hi"}')
    _add(db, "count", '{"n": 3}')
    _add(db, "collect", '[{"item": "a"}, {"item": "b"}]')
    _add(db, "boom", "{}")
    _add(db, "shout", '{"word": "flagged"}', flags=["gpu"])
    status = main(
        ["-c", db_url, "run", "--tasks", name, "--once", "-j", "2", "--forbidden-flag", "gpu"]
    )
    assert status == EXIT_OK
    seen = sys.modules[name].SEEN
    counted = [s for s in seen if s.startswith("count 3 in ")]
    assert sorted(set(seen) - set(counted)) == ["HI", "a+b"]
    assert len(counted) == 1
    assert "MainThread" not in counted[0]  # a sync task runs in a thread
    assert _jobs(db) == [("boom", 1, "ValueError: kaboom"), ("shout", 0, None)]


def test_run_once_with_a_function_reference(
    db_url: str, db: psycopg.Connection, tasks_module: Callable[[str], Any]
) -> None:
    name = tasks_module("cli_run_tasks_b")
    _add(db, "shout", '{"word": "one"}')
    _add(db, "count", '{"n": 1}')
    assert main(["-c", db_url, "run", "--tasks", f"{name}:only_shout", "--once"]) == EXIT_OK
    assert sys.modules[name].SEEN == ["ONE"]
    assert [row[0] for row in _jobs(db)] == ["count"]


def test_schema_only_and_no_migrate(
    empty_db_url: str, capsys: pytest.CaptureFixture[str], tasks_module: Callable[[str], Any]
) -> None:
    name = tasks_module("cli_run_tasks_c")
    assert main(["-c", empty_db_url, "run", "--tasks", name, "--once", "--no-migrate"]) == (
        EXIT_ERROR
    )
    assert "is not installed" in capsys.readouterr().err
    assert main(["-c", empty_db_url, "run", "--schema-only"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "Schema updated"
    assert main(["-c", empty_db_url, "run", "--tasks", name, "--once", "--no-migrate"]) == EXIT_OK


def test_too_new_schema_exits_57(
    db_url: str,
    db: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
    tasks_module: Callable[[str], Any],
) -> None:
    name = tasks_module("cli_run_tasks_d")
    db.execute("insert into graphile_worker.migrations (id, breaking) values (21, true)")
    for extra in ([], ["--no-migrate"]):
        status = main(["-c", db_url, "run", "--tasks", name, "--once", *extra])
        assert status == EXIT_SCHEMA_TOO_NEW
        assert "breaking migration 21" in capsys.readouterr().err
    assert main(["-c", db_url, "run", "--schema-only"]) == EXIT_SCHEMA_TOO_NEW


def test_bad_task_reference_is_a_clear_error(
    db_url: str, capsys: pytest.CaptureFixture[str], tasks_module: Callable[[str], Any]
) -> None:
    assert main(["-c", db_url, "run", "--tasks", "no_such_module_xyz", "--once"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "no module named 'no_such_module_xyz'" in err
    assert "Traceback" not in err


def _application_names(db: psycopg.Connection) -> set[str]:
    rows = db.execute(
        "select application_name from pg_stat_activity where datname = current_database()"
    ).fetchall()
    return {row[0] for row in rows}


def _start_worker(
    db_url: str, tmp_path: Path, name: str, *, console_script: bool = False
) -> tuple[subprocess.Popen[bytes], Path]:
    """A ``run`` process for the test task module, named ``name``, started in ``tmp_path``
    with ``python -m`` or the ``sqlalchemy-graphile`` script (which finds the module only
    because ``run`` puts the current directory on ``sys.path``)."""
    (tmp_path / "cli_run_proc_tasks.py").write_text(textwrap.dedent(_TASKS), encoding="utf-8")
    env = {**os.environ, "SG_APPLICATION_NAME": name}
    env.pop("DATABASE_URL", None)
    log_path = tmp_path / "worker.log"
    program = [str(SCRIPT)] if console_script else [sys.executable, "-m", "sqlalchemy_graphile"]
    command = [*program, "-c", db_url, "run"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--tasks", "cli_run_proc_tasks", "--poll-interval", "0.5"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, log_path


def test_continuous_worker_process_stops_on_sigterm(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    process, log_path = _start_worker(db_url, tmp_path, "sg-clitest-1")
    with reaped(process):
        wait_until(
            lambda: {"sg-clitest-1", "sg-clitest-1-listen"} <= _application_names(db),
            process,
            log_path,
        )
        _add(db, "shout", '{"word": "late"}')
        wait_until(lambda: not _jobs(db), process, log_path)
        status = terminate(process, log_path)
    assert status == 0, log_path.read_text()
    assert "sg-clitest-1" not in _application_names(db)


def test_breaking_migration_notice_stops_the_process_with_57(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    if not SCRIPT.exists():
        pytest.skip("the sqlalchemy-graphile script is not installed next to this Python")
    process, log_path = _start_worker(db_url, tmp_path, "sg-clitest-2", console_script=True)
    with reaped(process):
        wait_until(lambda: "sg-clitest-2-listen" in _application_names(db), process, log_path)
        # The LISTEN connection shows up before its LISTEN commands have run: announce the
        # migration until the worker has heard it and exited.
        deadline = time.monotonic() + DEADLINE_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            db.execute(
                "select pg_notify('worker:migrate', "
                '\'{"migrationNumber": 20, "breaking": true}\')'
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        status = process.wait(timeout=1)
    assert status == EXIT_SCHEMA_TOO_NEW, log_path.read_text()


def test_only_the_start_that_installs_the_schema_logs_about_it(
    empty_db_url: str, caplog: pytest.LogCaptureFixture, tasks_module: Callable[[str], Any]
) -> None:
    name = tasks_module("cli_run_tasks_schema_log")

    def schema_lines() -> list[str]:
        assert main(["-c", empty_db_url, "run", "--tasks", name, "--once"]) == EXIT_OK
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        caplog.clear()
        return [line for line in lines if "schema" in line]

    assert schema_lines() == ["installed schema 'graphile_worker' at revision 20"]
    assert schema_lines() == []
