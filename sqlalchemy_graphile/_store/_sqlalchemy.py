"""The job store on a SQLAlchemy connection, joining the transaction open on it.

Every call runs its statements on the one connection the store was made with, inside the
transaction the caller has open there (SQLAlchemy begins one on first use), and never
commits or rolls back: what the store locks, deletes and adds becomes visible to others
when the caller commits, and disappears if the caller rolls back. ``run_jobs`` runs a
test's jobs through it, so that they stay in the test's transaction.

The connection is a synchronous :class:`~sqlalchemy.Connection` (each call then runs its
statements at once, blocking the event loop while it waits, as any synchronous session
does) or an :class:`~sqlalchemy.ext.asyncio.AsyncConnection` (each call goes through
``run_sync``). The statements are the query catalog's, as SQLAlchemy clauses with typed
parameters, so asyncpg, psycopg 3 and psycopg2 bind them alike.

Unlike :class:`~sqlalchemy_graphile._store._asyncpg.AsyncpgJobStore`, a batch fetch leaves
JIT compilation as the caller's transaction has it: ``SET LOCAL`` would last until the
caller's transaction ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import _sql_jobs
from .._catalog import Catalog, Statement
from .._catalog._worker import flag_list, id_list, recorded_ids
from .._job_input import NewJob
from ..job import Job
from ._types import Failure, FetchedJob, TaskIds, fetched_job

R = TypeVar("R")


class SqlAlchemyJobStore:
    """A :class:`~sqlalchemy_graphile._store.JobStore` on ``connection``, locking as
    ``pool_id``, in the transaction open on the connection (see the module docstring).

    Database errors propagate as SQLAlchemy raises them (``sqlalchemy.exc.DBAPIError``
    and its subclasses); the caller's transaction is then aborted, as after any failed
    statement.
    """

    def __init__(
        self, connection: Connection | AsyncConnection, catalog: Catalog, pool_id: str
    ) -> None:
        self._connection = connection
        self._catalog = catalog
        self._statements = catalog.worker
        self._pool_id = pool_id

    @property
    def pool_id(self) -> str:
        return self._pool_id

    @property
    def catalog(self) -> Catalog:
        """The statements of the store's schema."""
        return self._catalog

    async def run(self, work: Callable[[Connection], R]) -> R:
        """Run ``work`` on the store's connection, in the caller's transaction (through
        ``run_sync`` on an async connection); return what it returns."""
        if isinstance(self._connection, AsyncConnection):
            return await self._connection.run_sync(work)
        return work(self._connection)

    async def _value(self, statement: Statement, **values: Any) -> Any:
        return await self.run(
            lambda connection: connection.execute(statement.clause, values).scalar_one()
        )

    async def _rows(self, statement: Statement, **values: Any) -> Sequence[Any]:
        return await self.run(lambda connection: connection.execute(statement.clause, values).all())

    # -- tasks --------------------------------------------------------------------------

    async def task_ids(self, identifiers: Sequence[str], *, register: bool = True) -> TaskIds:
        names = list(identifiers)
        statements = self._statements

        def work(connection: Connection) -> dict[int, str]:
            if register:
                connection.execute(statements.register_tasks.clause, {"identifiers": names})
            rows = connection.execute(statements.task_ids.clause, {"identifiers": names})
            return {int(task_id): identifier for task_id, identifier in rows}

        by_id = await self.run(work)
        return TaskIds(id_list(sorted(by_id)), by_id)

    # -- fetching -----------------------------------------------------------------------

    async def fetch(
        self,
        tasks: TaskIds,
        batch_size: int,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[FetchedJob]:
        with_flags = bool(forbidden_flags)
        statement = self._statements.fetch(
            batch_size, with_flags=with_flags, app_time=now is not None
        )
        values: dict[str, Any] = {"pool_id": self._pool_id, "task_ids": tasks.ids}
        if with_flags:
            values["forbidden_flags"] = list(forbidden_flags or ())
        if now is not None:
            values["now"] = now
        rows = await self._rows(statement, **values)
        names = tasks.identifier_by_id
        return [fetched_job(row, names[row[2]], row[16]) for row in rows]

    # -- outcomes -----------------------------------------------------------------------

    async def complete(self, jobs: Sequence[FetchedJob]) -> set[int]:
        statements = self._statements
        queued = any(job.queue_id is not None for job in jobs)
        statement = statements.complete_queued_jobs if queued else statements.complete_jobs
        ids = id_list(job.id for job in jobs)
        return recorded_ids(await self._value(statement, job_ids=ids, pool_id=self._pool_id))

    async def fail(self, failures: Sequence[Failure]) -> set[int]:
        statements = self._statements
        if len(failures) == 1:
            failure = failures[0]
            queued = failure.job.queue_id is not None
            statement = statements.fail_queued_job if queued else statements.fail_job
            text = await self._value(
                statement,
                job_id=failure.job.id,
                pool_id=self._pool_id,
                message=failure.message,
                payload=failure.replacement_payload,
                permanent=failure.permanent,
            )
        else:
            text = await self._value(
                statements.fail_jobs,
                job_ids=id_list(f.job.id for f in failures),
                messages=[f.message for f in failures],
                payloads=[f.replacement_payload for f in failures],
                permanents=flag_list(f.permanent for f in failures),
                pool_id=self._pool_id,
            )
        return recorded_ids(text)

    async def release_and_fetch(
        self,
        release: FetchedJob | Failure,
        tasks: TaskIds,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> tuple[bool, FetchedJob | None]:
        with_flags = bool(forbidden_flags)
        statement = self._statements.release_and_fetch(
            failed=isinstance(release, Failure), with_flags=with_flags, app_time=now is not None
        )
        values: dict[str, Any] = {
            "pool_id": self._pool_id,
            "task_ids": tasks.ids,
            "job_id": release.id,
        }
        if isinstance(release, Failure):
            values["message"] = release.message
            values["payload"] = release.replacement_payload
            values["permanent"] = release.permanent
        if with_flags:
            values["forbidden_flags"] = list(forbidden_flags or ())
        if now is not None:
            values["now"] = now
        rows = await self._rows(statement, **values)
        row = rows[0] if rows else None
        recorded = row is not None and row[17] is not None
        if row is None or row[0] is None:
            return recorded, None
        return recorded, fetched_job(row, tasks.identifier_by_id[row[2]], row[16])

    async def fail_held(self, job_ids: Sequence[int], message: str) -> list[int]:
        rows = await self._rows(
            self._statements.fail_jobs_with_message,
            job_ids=id_list(job_ids),
            message=message,
            pool_id=self._pool_id,
        )
        return [row[0] for row in rows]

    async def give_back(self, job_ids: Sequence[int]) -> int:
        count = await self._value(
            self._statements.return_jobs, job_ids=id_list(job_ids), pool_id=self._pool_id
        )
        return int(count)

    # -- reading and maintenance -------------------------------------------------------

    async def jobs(self, job_ids: Sequence[int]) -> list[FetchedJob]:
        rows = await self._rows(self._statements.jobs_by_id, job_ids=id_list(job_ids))
        return [fetched_job(row, row[16], row[17]) for row in rows]

    async def reset_stale_locks(self, now: datetime | None = None) -> None:
        statement = self._statements.reset_locked(app_time=now is not None)
        values = {} if now is None else {"now": now}
        await self.run(lambda connection: connection.execute(statement.clause, values))

    # -- adding -------------------------------------------------------------------------

    async def add_job(self, job: NewJob) -> Job:
        schema = self._catalog.schema
        return await self.run(lambda connection: _sql_jobs.add_job(connection, schema, job))

    async def add_jobs(self, jobs: Sequence[NewJob], *, preserve_run_at: bool = False) -> list[Job]:
        schema = self._catalog.schema
        return await self.run(
            lambda connection: _sql_jobs.add_jobs(connection, schema, jobs, preserve_run_at)
        )
