"""The ``ctx.add_job`` family of a running task, on the job store that runs it.

A job a task adds goes through the same steps as one added with :class:`WorkerUtils`: its
arguments are validated (typed errors, before any SQL), the ``before_job_schedule`` hooks of
the plugins see it, and the add logic of :mod:`sqlalchemy_graphile._sql_jobs` runs it; only
the connection differs. In a worker it is one of the worker's own pool
(:class:`~sqlalchemy_graphile._store._asyncpg.AsyncpgJobStore`), so in-task adds need no
second pool and no SQLAlchemy; under ``run_jobs`` it is the test's connection
(:class:`~sqlalchemy_graphile._store._sqlalchemy.SqlAlchemyJobStore`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._job_input import NewJob
from .._plugins import Plugins
from .._scheduling import BulkAdd, JobScheduling
from .._schema_missing import schema_not_installed
from ..job import Job
from ..job_spec import JobSpec, RawJobSpec
from ..tasks import BatchTask, Task
from . import JobStore


class StoreAdder:
    """A :class:`~sqlalchemy_graphile.context.JobAdder` on ``store`` (whose schema is
    ``schema``), adding through the hooks of ``plugins``.

    Each call runs in the store's transaction: on the worker's asyncpg store, one of its
    own, committed when the call returns whatever becomes of the running job; on a
    SQLAlchemy store, the transaction open on its connection. Errors: as
    :class:`WorkerUtils`' add methods (:class:`SchemaNotInstalledError` when the schema is
    gone; other database errors as the store's driver raises them).
    """

    __slots__ = ("_scheduling", "_schema", "_store")

    def __init__(self, store: JobStore, schema: str, plugins: Plugins | None = None) -> None:
        self._store = store
        self._schema = schema
        self._scheduling = JobScheduling(plugins)

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        return await self._single(self._scheduling.add_job(task, spec))

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]:
        return await self._bulk(self._scheduling.add_jobs(jobs))

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        return await self._single(self._scheduling.add_raw_job(identifier, payload, spec))

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]:
        return await self._bulk(self._scheduling.add_raw_jobs(jobs))

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        return await self._single(self._scheduling.add_batch_job(items, spec))

    async def _single(self, job: NewJob) -> Job:
        with self._on_schema():
            return await self._store.add_job(job)

    async def _bulk(self, bulk: BulkAdd) -> list[Job]:
        if not bulk.jobs:
            return []
        with self._on_schema():
            return await self._store.add_jobs(bulk.jobs, preserve_run_at=bulk.preserve_run_at)

    @contextmanager
    def _on_schema(self) -> Iterator[None]:
        """A failure caused by a missing schema raised as :class:`SchemaNotInstalledError`."""
        try:
            yield
        except Exception as error:
            missing = schema_not_installed(error, self._schema)
            if missing is None:
                raise
            raise missing from None
