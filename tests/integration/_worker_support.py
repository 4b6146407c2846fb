"""Task types and helpers shared by the worker's integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import psycopg

from sqlalchemy_graphile import (
    BatchTask,
    JobEvent,
    Task,
    Worker,
    WorkerContext,
    WorkerEvent,
    WorkerEvents,
)


@dataclass
class Recorder:
    """An extension the test tasks report to.

    :func:`make_worker` subscribes :meth:`job_failed` to the worker's ``job:error`` events,
    so :meth:`wait_started` fails at once when the job it waits for fails instead of
    starting, and :meth:`gate_opened_at_exit` opens the gate however a test block ends, so
    a failing test never leaves a gated task (and the worker's graceful stop) waiting.
    """

    calls: list[tuple[str, Any]] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    running: int = 0
    max_running: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    fail_with: BaseException | None = None
    batch_result: Any = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    _woken: asyncio.Event = field(default_factory=asyncio.Event)

    def seen(self, identifier: str) -> list[Any]:
        return [payload for name, payload in self.calls if name == identifier]

    def mark_started(self) -> None:
        """Called by a gated task once it runs."""
        self.started.set()
        self._woken.set()

    def job_failed(self, event: JobEvent) -> None:
        """A ``job:error`` subscriber: record which job failed, and why."""
        self.failures.append((event.job.task_identifier, repr(event.error)))
        self._woken.set()

    async def wait_started(self, identifier: str = "gated", *, within: float = 15.0) -> None:
        """Wait until a gated task runs; fail at once if an ``identifier`` job fails first."""
        try:
            async with asyncio.timeout(within):
                while not self.started.is_set():
                    failed = [error for name, error in self.failures if name == identifier]
                    if failed:
                        raise AssertionError(f"the {identifier} job failed: {failed[0]}")
                    self._woken.clear()
                    await self._woken.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {identifier} job started within {within} s (failures: {self.failures})"
            ) from None

    @contextlib.asynccontextmanager
    async def gate_opened_at_exit(self) -> AsyncIterator[None]:
        """Open the gate when the block ends, however it ends."""
        try:
            yield
        finally:
            self.gate.set()


def recorder(ctx: WorkerContext) -> Recorder:
    found = ctx.get_ext(Recorder)
    assert found is not None
    return found


class Job3(Task):
    IDENTIFIER: ClassVar[str] = "job3"
    a: int = 0

    async def run(self, ctx: WorkerContext) -> None:
        rec = recorder(ctx)
        rec.calls.append(("job3", self.model_dump()))
        if rec.fail_with is not None:
            raise rec.fail_with


class Job2(Task):
    IDENTIFIER: ClassVar[str] = "job2"

    async def run(self, ctx: WorkerContext) -> None:
        recorder(ctx).calls.append(("job2", {}))


class Gated(Task):
    """Runs until the recorder's gate opens; tracks how many run at once."""

    IDENTIFIER: ClassVar[str] = "gated"
    n: int = 0

    async def run(self, ctx: WorkerContext) -> None:
        rec = recorder(ctx)
        rec.running += 1
        rec.max_running = max(rec.max_running, rec.running)
        rec.calls.append(("gated", self.n))
        rec.mark_started()
        try:
            await rec.gate.wait()
        finally:
            rec.running -= 1


class Serial(Task):
    """Yields to the loop a few times while it runs, to give overlaps a chance."""

    IDENTIFIER: ClassVar[str] = "serial"
    n: int

    async def run(self, ctx: WorkerContext) -> None:
        rec = recorder(ctx)
        rec.running += 1
        rec.max_running = max(rec.max_running, rec.running)
        rec.calls.append(("serial", self.n))
        for _ in range(5):
            await asyncio.sleep(0.01)
        rec.running -= 1


class SyncTask(Task):
    IDENTIFIER: ClassVar[str] = "sync_task"
    n: int = 0

    def run(self, ctx: WorkerContext) -> None:
        rec = recorder(ctx)
        rec.threads.append(threading.get_ident())
        rec.calls.append(("sync_task", self.n))


class Typed(Task):
    IDENTIFIER: ClassVar[str] = "typed"
    to: str
    count: int

    async def run(self, ctx: WorkerContext) -> None:
        recorder(ctx).calls.append(("typed", self.model_dump()))


class Item(BatchTask):
    IDENTIFIER: ClassVar[str] = "batch"
    a: int

    @classmethod
    async def run_batch(cls, items: list[Self], ctx: WorkerContext) -> Any:
        rec = recorder(ctx)
        rec.calls.append(("batch", [item.a for item in items]))
        if rec.fail_with is not None:
            raise rec.fail_with
        return rec.batch_result


class SyncItem(BatchTask):
    IDENTIFIER: ClassVar[str] = "sync_batch"
    a: int

    @classmethod
    def run_batch(cls, items: list[Self], ctx: WorkerContext) -> Any:
        rec = recorder(ctx)
        rec.threads.append(threading.get_ident())
        return [ValueError(f"odd {i.a}") if i.a % 2 else None for i in items]


def make_worker(url: str, *tasks: Any, rec: Recorder | None = None, **options: Any) -> Worker:
    options.setdefault("handle_signals", False)
    rec = rec or Recorder()
    if options.get("events") is None:
        options["events"] = WorkerEvents()
    options["events"].on("job:error", rec.job_failed)
    return Worker(url, tasks=list(tasks), extensions=[rec], **options)


async def eventually(
    check: Callable[[], Any], *, within: float = 15.0, interval: float = 0.02
) -> Any:
    """Poll ``check()`` (sync or async) until it returns something truthy; fail after
    ``within`` seconds with the last value."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s (last value {value!r})")
        await asyncio.sleep(interval)


class EventLog:
    """Collects every event of a worker, and lets a test await one."""

    def __init__(self) -> None:
        self.events: list[WorkerEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: WorkerEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e.name == name)

    async def wait_for(self, name: str, count: int = 1, *, within: float = 15.0) -> WorkerEvent:
        async with asyncio.timeout(within):
            while self.count(name) < count:
                self._changed.clear()
                await self._changed.wait()
        return [e for e in self.events if e.name == name][count - 1]


def rows(db: psycopg.Connection, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return db.execute(sql, args or None).fetchall()


def jobs(db: psycopg.Connection) -> list[dict[str, Any]]:
    cursor = db.execute(
        "select j.*, q.queue_name from graphile_worker._private_jobs j"
        " left join graphile_worker._private_job_queues q on q.id = j.job_queue_id order by j.id"
    )
    names = [c.name for c in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def locks(db: psycopg.Connection) -> int:
    """How many jobs and queues are locked."""
    (count,) = db.execute(
        "select (select count(*) from graphile_worker._private_jobs where locked_by is not null)"
        " + (select count(*) from graphile_worker._private_job_queues"
        " where locked_by is not null)"
    ).fetchone() or (0,)
    return int(count)


def add(db: psycopg.Connection, identifier: str, payload: str = "{}", **named: Any) -> int:
    """Add a job with the SQL function (named arguments bound); return its id."""
    extra = "".join(f", {name} := %({name})s" for name in named)
    (job_id,) = db.execute(
        f"select id from graphile_worker.add_job(%(i)s, %(p)s::json{extra})",
        {"i": identifier, "p": payload, **named},
    ).fetchone()  # type: ignore[misc]
    return int(job_id)


def logged() -> tuple[WorkerEvents, EventLog]:
    """A new events object whose every event goes to a new :class:`EventLog`."""
    log = EventLog()
    events = WorkerEvents()
    events.on_any(log)
    return events, log
