"""``demo``: a real worker processing a handful of real jobs, on whatever database is at hand.

It finds a database (``-c`` / ``$DATABASE_URL``, else a database of its own on the local
server, else on an embedded one; ``--embedded`` always takes the embedded one), installs
the schema, adds the demo jobs in one transaction with :class:`AsyncJobHelpers`, and runs a
:class:`Worker` until they are all done (or, with ``--forever``, until Ctrl-C). In a
database it was given, it keeps to a schema of its own, ``graphile_worker_demo``, unless
``-s`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from typing import ClassVar

from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from .. import models
from .._embedded import EMBEDDED_ENV_VAR, FoundDatabase, find_database
from .._identifiers import DEFAULT_SCHEMA
from .._urls import DATABASE_URL_ENV_VAR, shown_url
from ..context import WorkerContext
from ..errors import ConfigurationError, GraphileWorkerError
from ..events import JobEvent
from ..helpers import AsyncJobHelpers
from ..job_spec import JobSpec
from ..tasks import BatchTask, Task
from ..utils import WorkerUtils
from ..worker import Worker
from ._common import open_engine, schema_name

#: How long the demo waits for its jobs before giving up (the retry alone needs ~3 s).
DEADLINE_SECONDS = 60.0
#: The demo's schema in a database it was given (``-c`` / ``$DATABASE_URL``).
DEMO_SCHEMA = "graphile_worker_demo"
_POLL_SECONDS = 0.2
_print_lock = threading.Lock()


def _say(ctx: WorkerContext, message: str) -> None:
    """Print one line about the running job; sync tasks call it from threads."""
    job = ctx.job
    line = (
        f"  job {job.id:>5}  {job.task_identifier:<15} attempt {job.attempts}/"
        f"{job.max_attempts}  {message}\n"
    )
    with _print_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


class Greet(Task):
    """An ``async def`` task: runs on the worker's event loop."""

    IDENTIFIER: ClassVar[str] = "demo_greet"
    name: str

    async def run(self, ctx: WorkerContext) -> None:
        _say(ctx, f"Hello, {self.name}!")


class Fibonacci(Task):
    """A plain ``def`` task: runs in a thread, so CPU work never blocks the event loop."""

    IDENTIFIER: ClassVar[str] = "demo_fibonacci"
    n: int = Field(ge=0, le=1000)

    def run(self, ctx: WorkerContext) -> None:
        a, b = 0, 1
        for _ in range(self.n):
            a, b = b, a + b
        _say(ctx, f"fibonacci({self.n}) = {a}")


class SimulatedOutage(ConnectionError):
    """The demo's deliberate failure."""


class _HideSimulatedOutage(logging.Filter):
    """The worker logs every failure with its traceback; the demo's deliberate one is
    announced by the task itself instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SimulatedOutage))


class FlakyUpload(Task):
    """Fails its first attempt; the schema's backoff (e^1 ≈ 2.7 s) brings it back."""

    IDENTIFIER: ClassVar[str] = "demo_flaky"
    filename: str

    async def run(self, ctx: WorkerContext) -> None:
        if ctx.job.attempts == 1:
            _say(ctx, f"uploading {self.filename} failed; retried in about 3 s")
            raise SimulatedOutage("storage did not answer (simulated)")
        _say(ctx, f"uploaded {self.filename} on the retry")


class Notify(BatchTask):
    """A batch task: one job holds several items, handled together."""

    IDENTIFIER: ClassVar[str] = "demo_notify"
    user: str

    @classmethod
    async def run_batch(cls, items: list[Notify], ctx: WorkerContext) -> None:
        _say(ctx, f"notified {len(items)} users in one job: {', '.join(i.user for i in items)}")


class SendReceipt(Task):
    """Jobs in the named queue ``receipts`` run one at a time, in order."""

    IDENTIFIER: ClassVar[str] = "demo_receipt"
    order: int

    async def run(self, ctx: WorkerContext) -> None:
        await asyncio.sleep(0.1)
        _say(ctx, f"sent the receipt for order {self.order} (queue {ctx.job.queue_name})")


DEMO_TASKS: list[type[Task] | type[BatchTask]] = [
    Greet,
    Fibonacci,
    FlakyUpload,
    Notify,
    SendReceipt,
]


async def _add_demo_jobs(engine: AsyncEngine, schema: str) -> list[int]:
    """Add the demo jobs in one transaction, as an application would; return their ids."""
    async with AsyncSession(engine) as session, session.begin():
        helpers = AsyncJobHelpers(session, schema=schema)
        jobs = [
            await helpers.add_job(Greet(name="Ada")),
            await helpers.add_job(Greet(name="Grace"), JobSpec(priority=-1)),
            await helpers.add_job(Fibonacci(n=90)),
            await helpers.add_job(FlakyUpload(filename="report.pdf")),
            await helpers.add_batch_job([Notify(user=u) for u in ("ada", "grace", "linus")]),
            *[
                await helpers.add_job(SendReceipt(order=n), JobSpec(queue_name="receipts"))
                for n in (1001, 1002, 1003)
            ],
        ]
    return [job.id for job in jobs]


async def _remaining(engine: AsyncEngine, schema: str, ids: list[int]) -> int:
    """How many of ``ids`` are still in the queue (a completed job is deleted)."""
    translated = engine.execution_options(schema_translate_map={DEFAULT_SCHEMA: schema})
    async with translated.connect() as connection:
        query = select(func.count()).select_from(models.JobView).where(models.JobView.id.in_(ids))
        return int((await connection.execute(query)).scalar_one())


async def _wait_for(
    engine: AsyncEngine, schema: str, ids: list[int], run: asyncio.Task[None]
) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not run.done():
        if await _remaining(engine, schema, ids) == 0:
            return
        if time.monotonic() > deadline:
            raise GraphileWorkerError(
                f"the demo jobs were not all done after {DEADLINE_SECONDS:.0f} s"
            )
        await asyncio.wait([run], timeout=_POLL_SECONDS)


def _schema_option(schema: str) -> str:
    return "" if schema == DEFAULT_SCHEMA else f" -s {schema}"


def _use_embedded(args: argparse.Namespace) -> bool:
    """``--embedded`` or ``$SG_DEMO_EMBEDDED=1``; with ``-c`` a :class:`ConfigurationError`
    (``$DATABASE_URL`` is ignored then)."""
    embedded = bool(args.embedded) or os.environ.get(EMBEDDED_ENV_VAR, "") not in ("", "0")
    if embedded and args.connection:
        raise ConfigurationError(
            f"the demo cannot use both -c and the embedded server (--embedded or "
            f"{EMBEDDED_ENV_VAR}=1); give one of them"
        )
    return embedded


def _demo_schema(args: argparse.Namespace, found: FoundDatabase) -> tuple[str, str | None]:
    """The schema to use, and how to remove it when the demo picked it in a database it
    was given."""
    if found.own:
        return schema_name(args), None
    if args.schema is not None:
        return schema_name(args), None
    return DEMO_SCHEMA, (
        f"The demo keeps to the schema {DEMO_SCHEMA} there. "
        f"To remove it later: DROP SCHEMA {DEMO_SCHEMA} CASCADE;"
    )


class _Completed:
    """The ids of the jobs the worker completed (``job:success`` events)."""

    def __init__(self) -> None:
        self.ids: set[int] = set()

    def __call__(self, event: JobEvent) -> None:
        self.ids.add(event.job.id)

    def summary(self, demo_ids: list[int]) -> str:
        demo = len(self.ids.intersection(demo_ids))
        others = len(self.ids.difference(demo_ids))
        also = f", and {others} other job(s)" if others else ""
        return f"Done: {demo} of {len(demo_ids)} demo jobs completed{also}."


async def _run(
    worker: Worker, engine: AsyncEngine, schema: str, ids: list[int], url: str, *, forever: bool
) -> None:
    """Run ``worker`` until the demo jobs are done, or with ``forever`` until a signal."""
    run = asyncio.create_task(worker.run())
    if forever:
        print(
            "Running until Ctrl-C. Add a job from another shell with:\n"
            f"  sqlalchemy-graphile -c '{shown_url(url)}'{_schema_option(schema)}"
            " add demo_greet"
            ' --payload \'{"name": "you"}\'\n'
            "and watch the queue in a browser (with the dashboard extra) with:\n"
            f"  sqlalchemy-graphile -c '{shown_url(url)}'{_schema_option(schema)} dashboard",
            flush=True,
        )
    else:
        try:
            await _wait_for(engine, schema, ids, run)
        finally:
            await worker.stop()
    await run


async def demo(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 once every demo job is done or the worker was stopped by a
    signal (57 if a breaking migration stopped it)."""
    embedded = _use_embedded(args)
    url = None if embedded else args.connection or os.environ.get(DATABASE_URL_ENV_VAR)
    found = await find_database(url, embedded=embedded)
    schema, schema_removal = _demo_schema(args, found)
    print(f"Database: {found.description}", flush=True)
    for removal in (found.removal, schema_removal):
        if removal is not None:
            print(f"  {removal}", flush=True)
    async with open_engine(found.url, "sqlalchemy-graphile-demo") as engine:
        created = await WorkerUtils(engine, schema=schema).migrate()
        print(f"Schema {schema!r}: {'installed' if created else 'already installed'}")
        ids = await _add_demo_jobs(engine, schema)
        print(
            f"Added {len(ids)} jobs in one transaction; starting a worker "
            f"(concurrency {args.jobs})",
            flush=True,
        )
        completed = _Completed()
        worker = Worker(engine, tasks=DEMO_TASKS, concurrency=args.jobs, schema=schema)
        worker.events.on("job:success", completed)
        worker_logger = logging.getLogger("sqlalchemy_graphile.worker")
        hide_outage = _HideSimulatedOutage()
        worker_logger.addFilter(hide_outage)
        try:
            await _run(worker, engine, schema, ids, found.url, forever=args.forever)
        finally:
            worker_logger.removeFilter(hide_outage)
    print(completed.summary(ids))
    return worker.exit_code
