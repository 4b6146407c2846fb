"""The add and admin operations, shared by :class:`JobHelpers`, :class:`AsyncJobHelpers` and
:class:`WorkerUtils`.

Each method of :class:`JobOperations` validates its arguments at once (raising our typed
errors before any SQL) and returns an :data:`Operation`: a function that does the work on a
synchronous SQLAlchemy ``Connection``. The sync helpers call it on ``session.connection()``;
the async ones hand it to ``run_sync``, so the logic exists once. A statement that fails
because the schema is not installed raises :class:`SchemaNotInstalledError`. The
``before_job_schedule`` hooks of the registered plugins run on every add, after the
arguments are validated and before the operation is returned
(:class:`~sqlalchemy_graphile._scheduling.JobScheduling`).

The add methods return a :class:`JobAdd`: an :data:`Operation` that also hands out its
add logic as a :data:`~sqlalchemy_graphile._sql_jobs.Routine`, so that :class:`WorkerUtils`
can run the very same add on the asyncpg connection under an asyncpg engine
(:mod:`~sqlalchemy_graphile._asyncpg_adds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from . import _copy_jobs, _job_input, _sql_jobs
from ._catalog import catalog_for
from ._catalog._jobs import CLEANUP_TASKS, JobStatements
from ._identifiers import resolve_schema
from ._plugins import Plugins
from ._scheduling import BulkAdd, JobScheduling
from ._schema_missing import schema_not_installed
from ._sql_jobs import Routine, adding_job, adding_job_ids, adding_jobs
from .errors import ConfigurationError
from .job import Job
from .job_spec import JobSpec, RawJobSpec
from .tasks import BatchTask, Task

T = TypeVar("T")

#: Work to run on a synchronous connection, inside the transaction open on it.
Operation = Callable[[Connection], T]


@dataclass(frozen=True, slots=True)
class JobAdd(Generic[T]):
    """An add, validated and through the plugins' hooks, ready to run on either driver.

    Called with a synchronous SQLAlchemy ``Connection`` it is an :data:`Operation` (it
    joins the transaction open on the connection); :meth:`routine` gives the same add as a
    :data:`~sqlalchemy_graphile._sql_jobs.Routine` for an asyncpg connection. Either way a
    missing schema raises :class:`SchemaNotInstalledError` (see :func:`raise_database_error`).
    """

    schema: str
    start: Callable[[JobStatements], Routine[T]]
    """The add logic, given the statements of :attr:`schema`."""
    needs_transaction: bool
    """Whether the add may write with more than one statement: a bulk add of several jobs
    where a keyed one may have to be added again after the others were written. Such an
    add needs a transaction to be atomic; any other add writes with its first statement
    alone (what follows it, if anything, reads names or repeats an add that wrote nothing)."""

    def routine(self) -> Routine[T]:
        """A fresh run of the add logic."""
        return self.start(catalog_for(self.schema).jobs)

    def __call__(self, connection: Connection) -> T:
        try:
            return _sql_jobs.run_routine(connection, self.routine())
        except DBAPIError as error:
            raise_database_error(error, self.schema)


def raise_database_error(error: DBAPIError, schema: str) -> NoReturn:
    """Raise :class:`SchemaNotInstalledError` when ``error`` says an object of the job queue
    in ``schema`` does not exist, else ``error`` itself. Changes nothing: a transaction the
    error aborted stays as the driver left it."""
    missing = schema_not_installed(error, schema)
    if missing is None:
        raise error
    raise missing from None


class JobOperations:
    """Validated operations on the job queue in one schema (validated at construction),
    adding jobs through the ``before_job_schedule`` hooks of ``plugins``."""

    __slots__ = ("_scheduling", "schema")

    def __init__(self, schema: str | None = None, plugins: Plugins | None = None) -> None:
        self.schema = resolve_schema(schema)
        self._scheduling = JobScheduling(plugins)

    def add_job(self, task: Task, spec: JobSpec | None) -> JobAdd[Job]:
        return self._single(self._scheduling.add_job(task, spec))

    def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> JobAdd[list[Job]]:
        return self._bulk(self._scheduling.add_jobs(jobs))

    def add_job_ids(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> JobAdd[list[int]]:
        return self._bulk_ids(self._scheduling.add_jobs(jobs))

    def copy_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> Operation[list[int]]:
        return self._copy(self._scheduling.add_jobs(jobs), "copy_jobs")

    def add_raw_job(self, identifier: str, payload: Any, spec: JobSpec | None) -> JobAdd[Job]:
        return self._single(self._scheduling.add_raw_job(identifier, payload, spec))

    def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> JobAdd[list[Job]]:
        return self._bulk(self._scheduling.add_raw_jobs(jobs))

    def add_raw_job_ids(self, jobs: Sequence[RawJobSpec]) -> JobAdd[list[int]]:
        return self._bulk_ids(self._scheduling.add_raw_jobs(jobs))

    def copy_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> Operation[list[int]]:
        return self._copy(self._scheduling.add_raw_jobs(jobs), "copy_raw_jobs")

    def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None) -> JobAdd[Job]:
        return self._single(self._scheduling.add_batch_job(items, spec))

    def _on_schema(self, work: Operation[T]) -> Operation[T]:
        """``work``, with a failure caused by a missing schema raised as
        :class:`SchemaNotInstalledError` (the transaction is left as the driver left it)."""
        schema = self.schema

        def run(connection: Connection) -> T:
            try:
                return work(connection)
            except DBAPIError as error:
                raise_database_error(error, schema)

        return run

    def _single(self, job: _job_input.NewJob) -> JobAdd[Job]:
        return JobAdd(self.schema, lambda statements: adding_job(statements, job), False)

    def _bulk(self, bulk: BulkAdd) -> JobAdd[list[Job]]:
        jobs, preserve_run_at = bulk.jobs, bulk.preserve_run_at
        return JobAdd(
            self.schema,
            lambda statements: adding_jobs(statements, jobs, preserve_run_at),
            _may_write_again(jobs),
        )

    def _bulk_ids(self, bulk: BulkAdd) -> JobAdd[list[int]]:
        jobs, preserve_run_at = bulk.jobs, bulk.preserve_run_at
        return JobAdd(
            self.schema,
            lambda statements: adding_job_ids(statements, jobs, preserve_run_at),
            _may_write_again(jobs),
        )

    def _copy(self, bulk: BulkAdd, method: str) -> Operation[list[int]]:
        jobs = bulk.jobs
        _job_input.unkeyed_jobs(jobs, method)
        if not jobs:
            return lambda connection: []
        return self._on_schema(
            lambda connection: _copy_jobs.copy_jobs(connection, self.schema, jobs)
        )

    def remove_job(self, job_key: str) -> Operation[Job | None]:
        key = _job_input.job_key(job_key)
        return self._on_schema(
            lambda connection: _sql_jobs.remove_job(connection, self.schema, key)
        )

    def complete_jobs(self, ids: Iterable[int]) -> Operation[list[Job]]:
        job_ids = _job_input.job_ids(ids)
        return self._on_schema(
            lambda connection: _sql_jobs.complete_jobs(connection, self.schema, job_ids)
        )

    def permanently_fail_jobs(self, ids: Iterable[int], reason: str | None) -> Operation[list[Job]]:
        job_ids = _job_input.job_ids(ids)
        message = _job_input.optional_text(reason, "reason")
        return self._on_schema(
            lambda connection: _sql_jobs.permanently_fail_jobs(
                connection, self.schema, job_ids, message
            )
        )

    def reschedule_jobs(
        self,
        ids: Iterable[int],
        *,
        run_at: Any,
        priority: Any,
        attempts: Any,
        max_attempts: Any,
    ) -> Operation[list[Job]]:
        job_ids = _job_input.job_ids(ids)
        new_run_at = _job_input.optional_aware_datetime(run_at, "run_at")
        new_priority = _job_input.optional_smallint(priority, "priority")
        new_attempts = _job_input.optional_smallint(attempts, "attempts", minimum=0)
        new_max_attempts = _job_input.optional_smallint(max_attempts, "max_attempts", minimum=1)
        return self._on_schema(
            lambda connection: _sql_jobs.reschedule_jobs(
                connection,
                self.schema,
                job_ids,
                run_at=new_run_at,
                priority=new_priority,
                attempts=new_attempts,
                max_attempts=new_max_attempts,
            )
        )

    def force_unlock_workers(self, worker_ids: Iterable[str]) -> Operation[None]:
        ids = _job_input.text_list(worker_ids, "worker ids")
        return self._on_schema(
            lambda connection: _sql_jobs.force_unlock_workers(connection, self.schema, ids)
        )

    def cleanup(
        self, tasks: Iterable[str], task_identifiers_to_keep: Iterable[str]
    ) -> Operation[dict[str, int]]:
        names = _cleanup_names(tasks)
        keep = _job_input.text_list(task_identifiers_to_keep, "task_identifiers_to_keep")
        return self._on_schema(
            lambda connection: _sql_jobs.cleanup(connection, self.schema, names, keep)
        )


def _may_write_again(jobs: Sequence[_job_input.NewJob]) -> bool:
    """Whether a bulk add of ``jobs`` may write after its first statement: when a keyed job
    has to be added again while the others are already written."""
    return len(jobs) > 1 and any(job.spec.job_key is not None for job in jobs)


def _cleanup_names(tasks: Iterable[str]) -> frozenset[str]:
    allowed = ", ".join(CLEANUP_TASKS)
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Iterable):
        raise ConfigurationError(f"cleanup tasks must be a list of names from: {allowed}")
    names = list(tasks)
    unknown = [name for name in names if name not in CLEANUP_TASKS]
    if unknown:
        raise ConfigurationError(
            f"unknown cleanup task(s) {', '.join(map(repr, unknown))}; allowed: {allowed}"
        )
    return frozenset(names)
