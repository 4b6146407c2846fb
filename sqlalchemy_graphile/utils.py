""":class:`WorkerUtils`: manage the job queue from outside any transaction of yours.

Each method runs in its own transaction on an async engine and has committed when it
returns (Graphile Worker's ``makeWorkerUtils``). To add jobs atomically with your own writes,
use :class:`~sqlalchemy_graphile.JobHelpers` / :class:`~sqlalchemy_graphile.AsyncJobHelpers`
instead; both run the same code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import migrations
from ._asyncpg_adds import add_on_engine, runs_on_asyncpg
from ._catalog import catalog_for
from ._catalog._jobs import CLEANUP_TASKS
from ._job_input import return_jobs_flag
from ._operations import JobAdd, JobOperations, Operation
from ._plugins import Plugins
from ._poolers import Pooler, asyncpg_engine_connect_args, check_pooler
from ._recovery import DEFAULT_RESILIENT_FLAGS, RegisteredWorker, SweepResult, SweepSettings
from ._store._sqlalchemy_recovery import SqlAlchemyRecoveryStore
from ._urls import async_url, database_url_from_env
from .errors import ConfigurationError
from .events import WorkerEvents
from .hooks import WorkerPlugin
from .job import Job
from .job_spec import JobSpec, RawJobSpec
from .tasks import BatchTask, Task

T = TypeVar("T")

__all__ = ["CLEANUP_TASKS", "WorkerUtils"]


class WorkerUtils:
    """Administer the job queue: install the schema, add, remove, complete, fail,
    reschedule and unlock jobs, clean up, list registered workers and recover dead ones.

    ``database`` is a URL (``str`` or :class:`sqlalchemy.URL`; a plain ``postgresql://`` URL
    uses asyncpg), an :class:`~sqlalchemy.ext.asyncio.AsyncEngine`, or ``None`` for
    ``$DATABASE_URL``. An engine we create is disposed by :meth:`close`; an engine you pass
    is left to you. ``schema`` defaults to ``$GRAPHILE_WORKER_SCHEMA`` or
    ``graphile_worker``. ``pooler="transaction"`` when the URL is a pooler in transaction
    mode: the engine made from it prepares only unnamed statements (an engine you pass
    needs the settings of docs/poolers.md instead). ``plugins``
    (:class:`~sqlalchemy_graphile.WorkerPlugin` instances) see every job added through
    ``before_job_schedule``; ``events`` receives their ``hook:error`` events. Raises
    :class:`ConfigurationError` or
    :class:`InvalidIdentifierError` for bad options; no connection is made until a method
    runs.

    ::

        async with WorkerUtils("postgresql://app@db/app") as utils:
            await utils.migrate()
            await utils.add_job(SendEmail(to="a@example.com"))
    """

    __slots__ = ("_engine", "_operations", "_owns_engine")

    def __init__(
        self,
        database: str | URL | AsyncEngine | None = None,
        *,
        schema: str | None = None,
        pooler: Pooler | None = None,
        plugins: Iterable[WorkerPlugin] = (),
        events: WorkerEvents | None = None,
    ) -> None:
        self._operations = JobOperations(schema, Plugins.of(plugins, events))
        pooler = check_pooler(pooler)
        if isinstance(database, AsyncEngine):
            if pooler is not None:
                raise ConfigurationError(
                    "pooler applies to the engine WorkerUtils makes from a URL; create your "
                    "engine with the connect_args of docs/poolers.md instead"
                )
            self._engine = database
            self._owns_engine = False
            return
        if database is None:
            database = database_url_from_env()
        if not isinstance(database, str | URL):
            raise ConfigurationError(
                "database must be a URL or an AsyncEngine (create one with "
                f"sqlalchemy.ext.asyncio.create_async_engine), not {type(database).__name__}"
            )
        self._engine = create_async_engine(
            async_url(database), connect_args=asyncpg_engine_connect_args(pooler)
        )
        self._owns_engine = True

    @property
    def engine(self) -> AsyncEngine:
        """The async engine the methods use (yours, or the one made from the URL)."""
        return self._engine

    @property
    def schema(self) -> str:
        """The schema holding the job queue."""
        return self._operations.schema

    async def close(self) -> None:
        """Dispose the engine if it was created from a URL; an engine you gave is kept."""
        if self._owns_engine:
            await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, operation: Operation[T]) -> T:
        async with self._engine.begin() as connection:
            return await connection.run_sync(operation)

    async def _add(self, add: JobAdd[T]) -> T:
        """Run an add, committed as a whole when this returns. On an asyncpg engine it runs
        on the asyncpg connection under one of the engine's connections
        (:mod:`~sqlalchemy_graphile._asyncpg_adds`); on any other, through SQLAlchemy. An add
        that writes with its first statement alone runs without a transaction, that
        statement committing on its own: one round trip for a single add instead of three
        (``BEGIN``, the statement, ``COMMIT``); a bulk add of keyed jobs, which may write
        again, runs in a transaction."""
        if runs_on_asyncpg(self._engine):
            return await add_on_engine(self._engine, add)
        if add.needs_transaction:
            return await self._run(add)
        async with self._engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return await autocommit.run_sync(add)

    # --- schema --------------------------------------------------------------------------

    async def migrate(self) -> bool:
        """Install the schema, or adopt one Graphile Worker installed, in a transaction of
        its own, committed on return.

        Returns ``True`` when objects were created. Safe to run from several processes at
        once. Raises :class:`SchemaTooOldError` / :class:`SchemaTooNewError` for a schema this
        version cannot adopt.
        """
        schema = self.schema
        return await self._run(lambda connection: migrations.install(connection, schema))

    async def check_schema(self) -> None:
        """Raise unless workers of this version can run on the installed schema.

        Reads the ledger in a transaction of its own and writes nothing. Raises
        :class:`SchemaNotInstalledError`, :class:`SchemaTooOldError` or
        :class:`SchemaTooNewError`; a newer, non-breaking revision only logs a warning.
        """
        schema = self.schema
        state = await self._run(lambda connection: migrations.read_ledger(connection, schema))
        migrations.check_compatible(state, schema)

    # --- adding jobs (auto-committed: each add has committed when it returns) -------------

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        """Add one job for ``task``, auto-committed: it has committed when this returns;
        errors as :meth:`JobHelpers.add_job`."""
        return await self._add(self._operations.add_job(task, spec))

    @overload
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: Literal[True] = True
    ) -> list[Job]: ...
    @overload
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: Literal[False]
    ) -> list[int]: ...
    @overload
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: bool
    ) -> list[Job] | list[int]: ...
    async def add_jobs(
        self, jobs: Sequence[tuple[Task, JobSpec | None]], *, return_jobs: bool = True
    ) -> list[Job] | list[int]:
        """Add jobs of one task type in one round trip, auto-committed: they have committed
        when this returns; one job per pair, at its index (its id with
        ``return_jobs=False``). Matching, rules and errors as :meth:`JobHelpers.add_jobs`."""
        if return_jobs_flag(return_jobs):
            return await self._add(self._operations.add_jobs(jobs))
        return await self._add(self._operations.add_job_ids(jobs))

    async def copy_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[int]:
        """Add unkeyed jobs of one task type with ``COPY`` in a transaction of its own,
        committed on return; return their ids in order. Rules and errors as
        :meth:`JobHelpers.copy_jobs`."""
        return await self._run(self._operations.copy_jobs(jobs))

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        """Add one job by task identifier and JSON-compatible payload, auto-committed: it
        has committed when this returns; errors as :meth:`JobHelpers.add_raw_job`."""
        return await self._add(self._operations.add_raw_job(identifier, payload, spec))

    @overload
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: Literal[True] = True
    ) -> list[Job]: ...
    @overload
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: Literal[False]
    ) -> list[int]: ...
    @overload
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: bool
    ) -> list[Job] | list[int]: ...
    async def add_raw_jobs(
        self, jobs: Sequence[RawJobSpec], *, return_jobs: bool = True
    ) -> list[Job] | list[int]:
        """Add jobs of any task identifiers in one round trip, auto-committed: they have
        committed when this returns; one job per spec, at its index (its id with
        ``return_jobs=False``). Matching and errors as :meth:`JobHelpers.add_raw_jobs`."""
        if return_jobs_flag(return_jobs):
            return await self._add(self._operations.add_raw_jobs(jobs))
        return await self._add(self._operations.add_raw_job_ids(jobs))

    async def copy_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[int]:
        """Add unkeyed jobs of any task identifiers with ``COPY`` in a transaction of its
        own, committed on return; return their ids in order. Rules and errors as
        :meth:`JobHelpers.copy_raw_jobs`."""
        return await self._run(self._operations.copy_raw_jobs(jobs))

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        """Add one batch job holding ``items`` (appended to a pending keyed batch),
        auto-committed: it has committed when this returns; errors as
        :meth:`JobHelpers.add_batch_job`."""
        return await self._add(self._operations.add_batch_job(items, spec))

    # --- administration -------------------------------------------------------------------

    async def remove_job(self, job_key: str) -> Job | None:
        """Remove the job with ``job_key`` in a transaction of its own, committed on return;
        see :meth:`JobHelpers.remove_job`."""
        return await self._run(self._operations.remove_job(job_key))

    async def complete_jobs(self, ids: Iterable[int]) -> list[Job]:
        """Delete the listed jobs as if they had succeeded; return the deleted rows.

        Runs in a transaction of its own, committed on return. Jobs locked by a worker (less
        than four hours ago) are skipped. Permanently failed jobs can be completed. Ids that
        are not ints in the ``bigint`` range raise :class:`InvalidJobSpecError` before any
        SQL.
        """
        return await self._run(self._operations.complete_jobs(ids))

    async def permanently_fail_jobs(
        self, ids: Iterable[int], reason: str | None = None
    ) -> list[Job]:
        """Mark the listed unlocked jobs as permanently failed (``attempts = max_attempts``,
        ``last_error = reason`` or ``"Manually marked as failed"``); return those rows.

        Runs in a transaction of its own, committed on return. Bad ids or a ``reason`` that
        is not text PostgreSQL can store raise :class:`InvalidJobSpecError` before any SQL.
        """
        return await self._run(self._operations.permanently_fail_jobs(ids, reason))

    async def reschedule_jobs(
        self,
        ids: Iterable[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Overwrite ``run_at`` / ``priority`` / ``attempts`` / ``max_attempts`` of the
        listed unlocked jobs; return those rows.

        Runs in a transaction of its own, committed on return. ``None`` leaves a field
        alone; ``0`` is a value (``attempts=0`` revives a job). ``run_at`` must be
        timezone-aware. Bad values raise :class:`InvalidJobSpecError` before any SQL.
        """
        return await self._run(
            self._operations.reschedule_jobs(
                ids, run_at=run_at, priority=priority, attempts=attempts, max_attempts=max_attempts
            )
        )

    async def force_unlock_workers(self, worker_ids: Iterable[str]) -> None:
        """Unlock every job and queue locked by these worker (pool) ids.

        Runs in a transaction of its own, committed on return. Use it only for workers known
        to be dead: their interrupted attempt still counts. Ids that are not strings raise
        :class:`InvalidJobSpecError` before any SQL.
        """
        await self._run(self._operations.force_unlock_workers(worker_ids))

    async def cleanup(
        self,
        tasks: Iterable[str] = ("GC_JOB_QUEUES",),
        task_identifiers_to_keep: Iterable[str] = (),
    ) -> dict[str, int]:
        """Run cleanup tasks in a transaction of their own, committed on return; return how
        many rows each deleted.

        * ``DELETE_PERMAFAILED_JOBS``: delete unlocked jobs that used all their attempts.
        * ``GC_TASK_IDENTIFIERS``: delete task identifiers no job uses, except
          ``task_identifiers_to_keep``. Not safe while workers run (they cache the ids).
        * ``GC_JOB_QUEUES``: delete unlocked queues no job uses.

        They run in that order whatever the order given. Unknown names raise
        :class:`ConfigurationError` listing the allowed ones.
        """
        return await self._run(self._operations.cleanup(tasks, task_identifiers_to_keep))

    # --- crash recovery (schema revision 20) ----------------------------------------------

    async def sweep_stale_workers(
        self,
        *,
        sweep_threshold: float = 300.0,
        recovery_delay: float = 0.0,
        resilient_flags: Iterable[str] = DEFAULT_RESILIENT_FLAGS,
        resilient_threshold_multiplier: float = 3.0,
        recover_unregistered_locks: bool = False,
        dry_run: bool = False,
    ) -> SweepResult:
        """Run one recovery sweep now, in a transaction of its own, committed on return.

        Registered workers whose heartbeat is older than ``sweep_threshold`` seconds
        (``sweep_threshold * resilient_threshold_multiplier`` for those holding a job with
        one of ``resilient_flags``) are dead: their jobs are given back with the attempt
        refunded and ``run_at`` at least ``recovery_delay`` seconds ahead, their queue locks
        cleared and their rows deleted. ``recover_unregistered_locks`` also recovers locks
        older than the threshold whose owner never registered (unsafe next to Graphile
        Worker 0.17, which never registers). ``dry_run`` reports without changing anything.
        Only one sweep runs at a time (the Rust port's advisory lock): when another holds it,
        the result has ``swept=False``. Bad values raise :class:`ConfigurationError` before
        any SQL; a schema without revision 20 raises the database's error.
        """
        settings = SweepSettings(
            threshold=_seconds("sweep_threshold", sweep_threshold, positive=True),
            recovery_delay=_seconds("recovery_delay", recovery_delay, positive=False),
            resilient_flags=_strings("resilient_flags", resilient_flags),
            resilient_multiplier=_multiplier(resilient_threshold_multiplier),
            recover_unregistered=bool(recover_unregistered_locks),
        )
        async with self._engine.begin() as connection:
            return await self._recovery(connection).sweep(settings, dry_run=dry_run)

    async def list_workers(self) -> list[RegisteredWorker]:
        """Every worker registered in ``_private_workers``, oldest first, with its heartbeat
        age (seconds, by the database clock), its metadata and the jobs and queues it holds.
        Reads in a transaction of its own; a schema without revision 20 raises the
        database's error."""
        async with self._engine.begin() as connection:
            return await self._recovery(connection).list_workers()

    def _recovery(self, connection: AsyncConnection) -> SqlAlchemyRecoveryStore:
        return SqlAlchemyRecoveryStore(connection, catalog_for(self.schema))


def _seconds(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "greater than 0" if positive else "at least 0"
        raise ConfigurationError(f"{name} must be {bound}, not {value!r}")
    return float(value)


def _multiplier(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"resilient_threshold_multiplier must be a number, not {value!r}")
    if value < 1:
        raise ConfigurationError(f"resilient_threshold_multiplier must be at least 1, not {value}")
    return float(value)


def _strings(name: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ConfigurationError(f"{name} must be a list of strings, not {values!r}")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{name} must hold strings, not {item!r}")
    return items
