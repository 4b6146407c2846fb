"""Running the queued jobs inside the test's own transaction: :func:`run_jobs`.

Each job goes through what a worker does with it, on the test's connection instead of the
worker's own: the worker's fetch statement locks the next runnable job (counting the
attempt) and its named queue; the worker's ``TaskRunner`` validates the payload and runs
the task (or batch task) with a :class:`~sqlalchemy_graphile.WorkerContext`; the worker's
complete or fail statement records the outcome (deleting the job, or scheduling its retry
with backoff and keeping a batch's failed items). Follow-up jobs a task adds with
``ctx.add_job`` and friends go into the same transaction. Nothing is committed, so a test
that rolls back leaves nothing.

Work on the connection happens in plain functions on a synchronous
:class:`~sqlalchemy.Connection` (through ``run_sync`` for an async session), and the task
code runs on an event loop: the caller's for an async session, a private one for a sync
session.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from sqlalchemy import Connection

from .._catalog import catalog_for
from .._identifiers import resolve_schema
from .._plugins import Plugins
from .._store import Failure, FetchedJob
from .._store._adder import StoreAdder
from .._store._sqlalchemy import SqlAlchemyJobStore
from ..context import extension_map
from ..errors import ConfigurationError, GraphileWorkerError, SchemaNotInstalledError
from ..hooks import WorkerPlugin
from ..job import Job
from ..log_format import job_fields
from ..tasks import AnyTaskType
from ..worker._options import task_map
from ..worker._runner import Outcome, TaskRunner, is_final, log_outcome
from . import _sql
from ._connections import AsyncTarget, SyncTarget, connection_of, is_async

R = TypeVar("R")

logger = logging.getLogger("sqlalchemy_graphile.testing")

#: How a job's run ended: ``completed`` (the job was deleted), ``failed`` (its retry is
#: scheduled) or ``permanently_failed`` (no attempts are left).
RunStatus = Literal["completed", "failed", "permanently_failed"]


@dataclass(frozen=True, slots=True)
class RanJob:
    """One run of one job by :func:`run_jobs`.

    * ``job``: the :class:`~sqlalchemy_graphile.Job` row as it was locked for this run
      (``attempts`` counts this run; the payload is the one the task was given);
    * ``status``: ``"completed"``, ``"failed"`` (a retry is scheduled, with backoff) or
      ``"permanently_failed"`` (no attempts left, or a payload that does not fit the task);
    * ``error``: the exception the task raised (for a batch with failed items, a
      :class:`~sqlalchemy_graphile.BatchJobError` whose ``errors`` are the items' own),
      else ``None``;
    * ``last_error``: the text stored in the job's ``last_error``, else ``None``.
    """

    job: Job
    status: RunStatus
    error: BaseException | None = None
    last_error: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the job completed."""
        return self.status == "completed"

    def __str__(self) -> str:
        job = self.job
        text = (
            f"job {job.id} ({job.task_identifier!r}), attempt {job.attempts} of "
            f"{job.max_attempts}: {self.status.replace('_', ' ')}"
        )
        return text if self.last_error is None else f"{text}: {self.last_error}"


class JobFailedError(GraphileWorkerError):
    """Raised by :func:`run_jobs` with ``raise_on_failure=True`` once a job has failed (and
    its failure has been recorded, as a worker records it). ``run`` is that job's
    :class:`RanJob`, ``runs`` every run so far, the failed one last; the task's exception
    is the ``__cause__``."""

    def __init__(self, run: RanJob, runs: Sequence[RanJob]) -> None:
        super().__init__(str(run))
        self.run = run
        self.runs = list(runs)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A checked :func:`run_jobs` call."""

    tasks: dict[str, AnyTaskType]
    extensions: dict[type, object]
    schema: str
    limit: int | None
    run_scheduled: bool
    raise_on_failure: bool
    forbidden_flags: tuple[str, ...]
    plugins: Plugins
    pool_id: str


def _check(
    tasks: object,
    extensions: object,
    schema: str | None,
    limit: object,
    run_scheduled: object,
    raise_on_failure: object,
    forbidden_flags: object,
    plugins: object,
) -> _Plan:
    """Every argument checked, or a typed error; no SQL runs before this returns."""
    try:
        by_identifier = task_map(tasks)
    except ConfigurationError as error:
        raise ConfigurationError(f"run_jobs() tasks {error}") from None
    if isinstance(extensions, str | bytes) or not isinstance(extensions, Iterable):
        raise ConfigurationError("run_jobs() extensions must be an iterable of objects")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigurationError(f"run_jobs() limit must be None or an int >= 1, not {limit!r}")
    for name, flag in (("run_scheduled", run_scheduled), ("raise_on_failure", raise_on_failure)):
        if not isinstance(flag, bool):
            raise ConfigurationError(f"run_jobs() {name} must be True or False, not {flag!r}")
    if isinstance(forbidden_flags, str | bytes) or not isinstance(forbidden_flags, Iterable):
        raise ConfigurationError("run_jobs() forbidden_flags must be a list of strings")
    flags = tuple(forbidden_flags)
    if not all(isinstance(flag, str) and flag for flag in flags):
        raise ConfigurationError(
            f"run_jobs() forbidden_flags must hold non-empty strings: {list(flags)!r}"
        )
    return _Plan(
        tasks=by_identifier,
        extensions=extension_map(extensions),
        schema=resolve_schema(schema),
        limit=limit,
        run_scheduled=run_scheduled,  # type: ignore[arg-type]
        raise_on_failure=raise_on_failure,  # type: ignore[arg-type]
        forbidden_flags=flags,
        plugins=_plugins(plugins),
        pool_id=f"sgtest-{secrets.token_hex(9)}",
    )


def _plugins(plugins: object) -> Plugins:
    """``plugins`` checked (by :class:`Plugins`), with errors naming ``run_jobs()``."""
    try:
        return Plugins(plugins)  # type: ignore[arg-type]
    except ConfigurationError as error:
        raise ConfigurationError(f"run_jobs() {error}") from None


async def _fetch(store: SqlAlchemyJobStore, plan: _Plan) -> FetchedJob | None:
    """Lock the next runnable job, as a worker of ``plan.tasks`` would; ``None`` if none is
    runnable."""
    # Looked up before every fetch: a task may have added the first job of a task. Only
    # read: registering identifiers would write rows other transactions wait on.
    tasks = await store.task_ids(list(plan.tasks), register=False)
    if not tasks.identifier_by_id:
        return None
    now = None
    if plan.run_scheduled:
        latest_run_at = store.catalog.reads.latest_run_at.clause
        now = await store.run(lambda connection: connection.execute(latest_run_at).scalar_one())
    fetched = await store.fetch(tasks, 1, forbidden_flags=plan.forbidden_flags, now=now)
    return fetched[0] if fetched else None


def _schema_checker(plan: _Plan) -> Callable[[Connection], None]:
    """The work that raises :class:`SchemaNotInstalledError` if the schema is missing."""

    def check(connection: Connection) -> None:
        if not _sql.schema_installed(connection, plan.schema):
            raise SchemaNotInstalledError(
                f"the job queue schema {plan.schema!r} is not installed in this database: "
                "install it once per test run (the graphile_worker_database fixture, or "
                "sqlalchemy_graphile.testing.load_schema with pytest-postgresql)"
            )

    return check


async def _release(store: SqlAlchemyJobStore, fetched: FetchedJob, outcome: Outcome) -> bool:
    """Record ``outcome`` as a worker's releaser does; whether it was recorded."""
    if outcome.succeeded:
        recorded = await store.complete([fetched])
    else:
        failure = Failure(
            fetched,
            outcome.message or "the job failed",
            outcome.replacement_payload,
            outcome.permanent,
        )
        recorded = await store.fail([failure])
    return fetched.id in recorded


def _job_run(job: Job, outcome: Outcome, millis: float) -> RanJob:
    log_outcome(logger, job, outcome, millis)
    if outcome.succeeded:
        return RanJob(job, "completed")
    status: RunStatus = "permanently_failed" if is_final(job, outcome) else "failed"
    return RanJob(job, status, outcome.error, outcome.message or "the job failed")


async def _run(session: SyncTarget | AsyncTarget, plan: _Plan) -> list[RanJob]:
    """Fetch, run and release jobs until none is runnable or ``plan.limit`` ran."""
    runs: list[RanJob] = []
    connection = await connection_of(session, "run_jobs")
    store = SqlAlchemyJobStore(connection, catalog_for(plan.schema), plan.pool_id)
    await store.run(_schema_checker(plan))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run_jobs") as executor:
        runner = TaskRunner(
            plan.tasks,
            extensions=plan.extensions,
            pool_id=plan.pool_id,
            abort_signal=asyncio.Event(),
            adder=StoreAdder(store, plan.schema, plan.plugins),
            executor=executor,
            plugins=plan.plugins if plan.plugins.runs else None,
        )
        while plan.limit is None or len(runs) < plan.limit:
            fetched = await _fetch(store, plan)
            if fetched is None:
                break
            started = time.perf_counter()
            outcome = await runner.run(fetched)
            millis = (time.perf_counter() - started) * 1000
            if not await _release(store, fetched, outcome):
                logger.warning(
                    "the outcome of job %s (%s) was not recorded: the job is no longer "
                    "locked by run_jobs (did the task change its own row?)",
                    fetched.id,
                    fetched.job.task_identifier,
                    extra=job_fields(fetched.job),
                )
            run = _job_run(fetched.job, outcome, millis)
            runs.append(run)
            if plan.raise_on_failure and not run.succeeded:
                raise JobFailedError(run, runs) from outcome.error
    return runs


def _run_on_private_loop(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run ``coroutine`` to the end on an event loop of its own: in this thread, or in a
    new one if this thread already runs a loop. The thread's current loop is left as it
    was."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _complete(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run_jobs-loop") as thread:
        return thread.submit(_complete, coroutine).result()


def _complete(coroutine: Coroutine[Any, Any, R]) -> R:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


@overload
def run_jobs(
    session: SyncTarget,
    tasks: Iterable[AnyTaskType],
    /,
    *,
    extensions: Iterable[object] = ...,
    schema: str | None = ...,
    limit: int | None = ...,
    run_scheduled: bool = ...,
    raise_on_failure: bool = ...,
    forbidden_flags: Sequence[str] = ...,
    plugins: Iterable[WorkerPlugin] = ...,
) -> list[RanJob]: ...
@overload
def run_jobs(
    session: AsyncTarget,
    tasks: Iterable[AnyTaskType],
    /,
    *,
    extensions: Iterable[object] = ...,
    schema: str | None = ...,
    limit: int | None = ...,
    run_scheduled: bool = ...,
    raise_on_failure: bool = ...,
    forbidden_flags: Sequence[str] = ...,
    plugins: Iterable[WorkerPlugin] = ...,
) -> Coroutine[Any, Any, list[RanJob]]: ...
def run_jobs(
    session: SyncTarget | AsyncTarget,
    tasks: Iterable[AnyTaskType],
    /,
    *,
    extensions: Iterable[object] = (),
    schema: str | None = None,
    limit: int | None = None,
    run_scheduled: bool = False,
    raise_on_failure: bool = False,
    forbidden_flags: Sequence[str] = (),
    plugins: Iterable[WorkerPlugin] = (),
) -> list[RanJob] | Coroutine[Any, Any, list[RanJob]]:
    """Run the runnable jobs of ``tasks`` in the transaction of ``session``, one at a time,
    as a worker would, until none is runnable or ``limit`` jobs ran; return a
    :class:`RanJob` per job run, in order.

    ``session`` is a ``Session``, ``Connection`` or ``scoped_session`` (tasks' ``async``
    code then runs on a private event loop, in a new thread if this one already runs a
    loop); or an ``AsyncSession``, ``AsyncConnection`` or ``async_scoped_session``, and you
    await the call (tasks run on the caller's event loop). ``tasks`` are the
    :class:`~sqlalchemy_graphile.Task` and :class:`~sqlalchemy_graphile.BatchTask` classes a
    worker would be given; only their jobs run. ``extensions`` are what tasks reach with
    ``ctx.get_ext``. ``plugins`` are :class:`~sqlalchemy_graphile.WorkerPlugin` instances
    whose hooks run as under a worker: the run hooks around each job, and
    ``before_job_schedule`` on the jobs tasks add.

    A job is runnable when it is not locked, has attempts left, is not in a locked named
    queue, has no flag in ``forbidden_flags``, and its ``run_at`` is not after the
    transaction's ``now()`` (the time the test's transaction began); with
    ``run_scheduled=True``, whatever its ``run_at``, so scheduled jobs and retries run now.
    A failed job's retry is scheduled with backoff, so without ``run_scheduled`` it waits.
    With ``raise_on_failure=True`` the first failure raises :class:`JobFailedError` (after
    it is recorded).

    Joins the transaction open on the session's connection (or begins one, as any query
    would) and never commits: follow-up jobs added by tasks (``ctx.add_job``) join it too.
    Bad arguments raise :class:`ConfigurationError` or :class:`InvalidTaskError` before
    any SQL; a schema that is not installed raises :class:`SchemaNotInstalledError`.
    """
    plan = _check(
        tasks, extensions, schema, limit, run_scheduled, raise_on_failure, forbidden_flags, plugins
    )
    asynchronous = is_async(session, "run_jobs")
    work = _run(session, plan)
    if asynchronous:
        return work
    return _run_on_private_loop(work)


__all__ = ["JobFailedError", "RanJob", "RunStatus", "run_jobs"]
