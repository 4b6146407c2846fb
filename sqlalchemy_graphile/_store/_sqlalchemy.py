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
from .._catalog import Catalog
from .._catalog._statement import Call
from .._catalog._worker import recorded_ids
from .._job_input import NewJob
from ..job import Job
from ._calls import Calls, read_fetched, read_jobs, read_release_and_fetch, read_task_ids
from ._types import Failure, FetchedJob, TaskIds

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
        self._calls = Calls(self._statements, pool_id)

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

    async def _value(self, call: Call) -> Any:
        statement, values = call
        return await self.run(
            lambda connection: connection.execute(statement.clause, values).scalar_one()
        )

    async def _rows(self, call: Call) -> Sequence[Any]:
        statement, values = call
        return await self.run(lambda connection: connection.execute(statement.clause, values).all())

    # -- tasks --------------------------------------------------------------------------

    async def task_ids(self, identifiers: Sequence[str], *, register: bool = True) -> TaskIds:
        calls = self._calls

        def work(connection: Connection) -> Sequence[Any]:
            if register:
                statement, values = calls.register_tasks(identifiers)
                connection.execute(statement.clause, values)
            statement, values = calls.task_ids(identifiers)
            return connection.execute(statement.clause, values).all()

        return read_task_ids(await self.run(work))

    # -- fetching -----------------------------------------------------------------------

    async def fetch(
        self,
        tasks: TaskIds,
        batch_size: int,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[FetchedJob]:
        rows = await self._rows(self._calls.fetch(tasks, batch_size, forbidden_flags, now))
        return read_fetched(rows, tasks)

    # -- outcomes -----------------------------------------------------------------------

    async def complete(self, jobs: Sequence[FetchedJob]) -> set[int]:
        return recorded_ids(await self._value(self._calls.complete(jobs)))

    async def fail(self, failures: Sequence[Failure]) -> set[int]:
        return recorded_ids(await self._value(self._calls.fail(failures)))

    async def release_and_fetch(
        self,
        release: FetchedJob | Failure,
        tasks: TaskIds,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> tuple[bool, FetchedJob | None]:
        call = self._calls.release_and_fetch(release, tasks, forbidden_flags, now)
        rows = await self._rows(call)
        return read_release_and_fetch(rows[0] if rows else None, tasks)

    async def fail_held(self, job_ids: Sequence[int], message: str) -> list[int]:
        return [row[0] for row in await self._rows(self._calls.fail_held(job_ids, message))]

    async def give_back(self, job_ids: Sequence[int]) -> int:
        return int(await self._value(self._calls.give_back(job_ids)))

    # -- reading and maintenance -------------------------------------------------------

    async def jobs(self, job_ids: Sequence[int]) -> list[FetchedJob]:
        return read_jobs(await self._rows(self._calls.jobs(job_ids)))

    async def reset_stale_locks(self, now: datetime | None = None) -> None:
        statement, values = self._calls.reset_stale_locks(now)
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
