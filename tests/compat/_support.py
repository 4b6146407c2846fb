"""The Python half of the compatibility tests: the run log both runtimes write, task types
that mirror the Node scripts' tasks, and small database helpers.

Tasks record each run in ``compat.runs`` (through :class:`RunLog`, an extension), on a
connection of their own and with the server's ``clock_timestamp()``, exactly as the Node
tasks wrapped in ``sg_compat.recorded`` do; tests then read one log for both runtimes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

import psycopg
from psycopg.rows import dict_row

from sqlalchemy_graphile import BatchTask, Task, Worker, WorkerContext

S = "graphile_worker"

RUNS_TABLE = """
create schema compat;
create table compat.runs (
  id bigserial primary key,
  runtime text not null,
  task text not null,
  job_id bigint not null,
  attempt integer not null,
  payload text not null,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz
)
"""


def create_runs_table(db: psycopg.Connection) -> None:
    """Create ``compat.runs`` through the autocommit connection ``db``."""
    db.execute(RUNS_TABLE)


@dataclass(frozen=True)
class Run:
    """One row of ``compat.runs``: a task run by ``runtime`` (``"node"`` or ``"python"``),
    with the payload as that runtime's task saw it, re-encoded as JSON."""

    id: int
    runtime: str
    task: str
    job_id: int
    attempt: int
    payload: str
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class RunLog:
    """``compat.runs`` in the database at ``url``: Python tasks write to it (it is their
    extension) and tests read both runtimes' runs from it."""

    url: str

    @asynccontextmanager
    async def record(self, ctx: WorkerContext, payload: str) -> AsyncIterator[None]:
        """Log the start of ``ctx.job``'s run now and its end when the block exits."""
        connection = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        async with connection:
            cursor = await connection.execute(
                "insert into compat.runs (runtime, task, job_id, attempt, payload)"
                " values ('python', %s, %s, %s, %s) returning id",
                (ctx.job.task_identifier, ctx.job.id, ctx.job.attempts, payload),
            )
            (run_id,) = await cursor.fetchone() or (None,)
            try:
                yield
            finally:
                await connection.execute(
                    "update compat.runs set finished_at = clock_timestamp() where id = %s",
                    (run_id,),
                )

    def all(self) -> list[Run]:
        """Every run so far, in the order they started."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.cursor(row_factory=dict_row)
            rows = cursor.execute("select * from compat.runs order by id").fetchall()
        return [Run(**row) for row in rows]

    def finished(self) -> list[Run]:
        """The runs that have ended, in the order they started."""
        return [run for run in self.all() if run.finished_at is not None]


def run_log(ctx: WorkerContext) -> RunLog:
    log = ctx.get_ext(RunLog)
    assert log is not None, "give the worker a RunLog extension"
    return log


@dataclass
class Gate:
    """An extension that holds :class:`Held` jobs until it is opened."""

    opened: asyncio.Event

    @classmethod
    def closed(cls) -> Gate:
        return cls(asyncio.Event())


# --- task types (identifiers match the Node scripts' task lists) -------------------------


class Recorded(Task):
    """Base of the recording tasks: log the run, then :meth:`work`."""

    async def run(self, ctx: WorkerContext) -> None:
        async with run_log(ctx).record(ctx, self.model_dump_json()):
            await self.work(ctx)

    async def work(self, ctx: WorkerContext) -> None:
        """What the task does between its start and finish rows (nothing by default)."""


class Numbered(Recorded):
    IDENTIFIER: ClassVar[str] = "numbered"
    n: int


class PythonStep(Recorded):
    """A step of a serial queue that only the Python worker can run."""

    IDENTIFIER: ClassVar[str] = "py_step"
    n: int

    async def work(self, ctx: WorkerContext) -> None:
        await asyncio.sleep(0.05)


class SharedStep(PythonStep):
    """A step of a serial queue that either runtime can run."""

    IDENTIFIER: ClassVar[str] = "shared_step"


class Flaky(Recorded):
    """Always fails, saying which runtime and attempt failed."""

    IDENTIFIER: ClassVar[str] = "flaky"

    async def work(self, ctx: WorkerContext) -> None:
        raise RuntimeError(f"flaky failed on python, attempt {ctx.job.attempts}")


class Held(Recorded):
    """Runs until the worker's :class:`Gate` opens."""

    IDENTIFIER: ClassVar[str] = "held"
    a: int = 0

    async def work(self, ctx: WorkerContext) -> None:
        gate = ctx.get_ext(Gate)
        assert gate is not None, "give the worker a Gate extension"
        await gate.opened.wait()


class Line(BatchTask):
    """A batch item; the item fails when it runs on the runtime named in ``fail_on``."""

    IDENTIFIER: ClassVar[str] = "batch_lines"
    n: int
    fail_on: str | None = None

    @classmethod
    async def run_batch(cls, items: list[Self], ctx: WorkerContext) -> list[Exception | None]:
        payload = "[" + ",".join(item.model_dump_json() for item in items) + "]"
        async with run_log(ctx).record(ctx, payload):
            return [
                ValueError(f"line {item.n} failed on python") if item.fail_on == "python" else None
                for item in items
            ]


# --- database helpers ------------------------------------------------------------------


def job_rows(db: psycopg.Connection, where: str = "true", *args: Any) -> list[dict[str, Any]]:
    """Jobs as stored (``payload`` as text, ``flags`` as jsonb), with ``task_identifier`` and
    ``queue_name``, in id order."""
    cursor = db.cursor(row_factory=dict_row)
    return cursor.execute(
        "select j.*, j.payload::text as payload, t.identifier as task_identifier, q.queue_name"
        f" from {S}._private_jobs j join {S}._private_tasks t on t.id = j.task_id"
        f" left join {S}._private_job_queues q on q.id = j.job_queue_id"
        f" where {where} order by j.id",
        args or None,
    ).fetchall()


def job_row(db: psycopg.Connection, job_id: int | str) -> dict[str, Any]:
    (row,) = job_rows(db, "j.id = %s", int(job_id))
    return row


def queue_locks(db: psycopg.Connection) -> list[tuple[str, str | None]]:
    """``(queue_name, locked_by)`` of every named queue."""
    rows = db.execute(
        f"select queue_name, locked_by from {S}._private_job_queues order by queue_name"
    ).fetchall()
    return [(name, owner) for name, owner in rows]


def db_now(db: psycopg.Connection) -> datetime:
    (now,) = db.execute("select now()").fetchone() or (None,)
    assert isinstance(now, datetime)
    return now


def python_worker(url: str, *tasks: type[Task | BatchTask], **options: Any) -> Worker:
    """A worker for ``tasks`` that logs to ``compat.runs`` of ``url``, polls every 0.1 s and
    leaves signals alone; ``options`` are added or override."""
    options.setdefault("extensions", [RunLog(url)])
    options.setdefault("handle_signals", False)
    options.setdefault("poll_interval", 0.1)
    return Worker(url, tasks=list(tasks), **options)


async def eventually(
    check: Callable[[], Any], what: str, *, within: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll ``check()`` until it returns something truthy and return that; fail after
    ``within`` seconds, naming ``what`` and the last value."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s (last value {value!r})")
        await asyncio.sleep(interval)
