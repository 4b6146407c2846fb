"""The worker's job store, on an asyncpg pool.

Every call runs on a connection of the pool as a transaction of its own, committed when the
call returns, so one worker process holds no more connections than ``max_pool_size``. The
statements come from the query catalog as numbered text; asyncpg prepares each once per
connection and reuses it.

A batch fetch runs with JIT compilation off: its plan crosses ``jit_above_cost`` (a 500-job
fetch's plan costs about 900 000 with 20 000 jobs waiting), and compiling it costs far more
than it saves (see docs/performance.md); a one-job fetch's plan costs about 40 and runs as
it is. The setting is made with ``SET LOCAL`` inside the fetch's own transaction, not as a
startup parameter: poolers refuse startup parameters they do not know (PgBouncer:
``unsupported startup parameter: jit``), and a session-level setting could outlive the
worker's use of a pooled server connection. The transaction also keeps the fetch on one
server connection in a pooler's transaction mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .._catalog import Catalog
from .._catalog._statement import Call
from .._catalog._worker import recorded_ids
from .._job_input import NewJob
from .._sql_jobs import Routine, adding_job, adding_jobs
from ..job import Job
from ._calls import Calls, read_fetched, read_jobs, read_release_and_fetch, read_task_ids
from ._types import Failure, FetchedJob, TaskIds

T = TypeVar("T")

# One round trip: a simple query may hold several statements.
_BEGIN_WITHOUT_JIT = "begin; set local jit = off"


class AsyncpgJobStore:
    """A :class:`~sqlalchemy_graphile._store.JobStore` on ``pool``, locking as ``pool_id``.

    With ``asynchronous_release_commit`` outcomes are committed with ``synchronous_commit =
    off`` (see :class:`~sqlalchemy_graphile._catalog._worker.WorkerStatements`). Database
    errors propagate as asyncpg raises them.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        catalog: Catalog,
        pool_id: str,
        *,
        asynchronous_release_commit: bool = False,
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._statements = (
            catalog.worker_asynchronous_commit if asynchronous_release_commit else catalog.worker
        )
        self._pool_id = pool_id
        self._calls = Calls(self._statements, pool_id)

    @property
    def pool_id(self) -> str:
        return self._pool_id

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool the store runs on."""
        return self._pool

    @property
    def catalog(self) -> Catalog:
        """The statements of the store's schema."""
        return self._catalog

    async def _value(self, call: Call) -> Any:
        statement, values = call
        return await self._pool.fetchval(statement.numbered, *statement.arguments(values))

    async def _rows(self, call: Call) -> list[asyncpg.Record]:
        statement, values = call
        rows: list[asyncpg.Record] = await self._pool.fetch(
            statement.numbered, *statement.arguments(values)
        )
        return rows

    # -- tasks --------------------------------------------------------------------------

    async def task_ids(self, identifiers: Sequence[str], *, register: bool = True) -> TaskIds:
        calls = self._calls
        async with self._pool.acquire() as connection:
            if register:
                statement, values = calls.register_tasks(identifiers)
                await connection.execute(statement.numbered, *statement.arguments(values))
            statement, values = calls.task_ids(identifiers)
            rows = await connection.fetch(statement.numbered, *statement.arguments(values))
        return read_task_ids(rows)

    # -- fetching -----------------------------------------------------------------------

    async def fetch(
        self,
        tasks: TaskIds,
        batch_size: int,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[FetchedJob]:
        call = self._calls.fetch(tasks, batch_size, forbidden_flags, now)
        if batch_size == 1:
            rows = await self._rows(call)
        else:
            statement, values = call
            rows = await fetch_without_jit(
                self._pool, statement.numbered, *statement.arguments(values)
            )
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
        statement, values = self._calls.release_and_fetch(release, tasks, forbidden_flags, now)
        row = await self._pool.fetchrow(statement.numbered, *statement.arguments(values))
        return read_release_and_fetch(row, tasks)

    async def fail_held(self, job_ids: Sequence[int], message: str) -> list[int]:
        return [row[0] for row in await self._rows(self._calls.fail_held(job_ids, message))]

    async def give_back(self, job_ids: Sequence[int]) -> int:
        return int(await self._value(self._calls.give_back(job_ids)))

    # -- reading and maintenance -------------------------------------------------------

    async def jobs(self, job_ids: Sequence[int]) -> list[FetchedJob]:
        return read_jobs(await self._rows(self._calls.jobs(job_ids)))

    async def reset_stale_locks(self, now: datetime | None = None) -> None:
        statement, values = self._calls.reset_stale_locks(now)
        await self._pool.execute(statement.numbered, *statement.arguments(values))

    # -- adding -------------------------------------------------------------------------

    async def add_job(self, job: NewJob) -> Job:
        return await self._in_transaction(adding_job(self._catalog.jobs, job))

    async def add_jobs(self, jobs: Sequence[NewJob], *, preserve_run_at: bool = False) -> list[Job]:
        if not jobs:
            return []
        return await self._in_transaction(adding_jobs(self._catalog.jobs, jobs, preserve_run_at))

    async def _in_transaction(self, routine: Routine[T]) -> T:
        """Run ``routine`` on one connection of the pool, in one transaction committed
        before this returns (rolled back when the routine or a statement raises): its
        retries and its lookups of new task and queue names see the rows it added."""
        async with self._pool.acquire() as connection:
            await connection.execute("begin")
            try:
                result = await run_routine(connection, routine)
                await connection.execute("commit")
            except BaseException as error:
                await end_transaction(connection, error)
                raise
            return result


#: An asyncpg connection: of a pool (the worker's), or one a SQLAlchemy engine holds.
AnyConnection = asyncpg.Connection | PoolConnectionProxy


async def run_routine(connection: AnyConnection, routine: Routine[T]) -> T:
    """Run ``routine`` (see :mod:`sqlalchemy_graphile._sql_jobs`) on an asyncpg
    ``connection``, in the transaction open on it (or statement by statement, each
    committing on its own, when none is); raises what the routine or asyncpg raises."""
    try:
        call = next(routine)
    except StopIteration as finished:
        result: T = finished.value
        return result
    return await run_started_routine(connection, routine, call)


async def run_started_routine(connection: AnyConnection, routine: Routine[T], call: Call) -> T:
    """Run the rest of ``routine``, whose first ``call`` it already yielded, as
    :func:`run_routine` does."""
    while True:
        statement, values = call
        rows = await connection.fetch(statement.numbered, *statement.arguments(values))
        try:
            call = routine.send(rows)
        except StopIteration as finished:
            result: T = finished.value
            return result


async def fetch_without_jit(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of ``query``, run in a transaction of its own (committed on return) with
    ``jit`` off, on a connection of ``pool``. Database errors propagate; the transaction is
    rolled back first (or the connection closed when that is not possible)."""
    async with pool.acquire() as connection:
        await connection.execute(_BEGIN_WITHOUT_JIT)
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args)
            await connection.execute("commit")
        except BaseException as error:
            await end_transaction(connection, error)
            raise
        return rows


async def end_transaction(connection: AnyConnection, error: BaseException) -> None:
    """Leave no transaction open on a connection going back to the pool: roll it back, or
    close the connection when the statement was cancelled (the connection may still be
    busy with it) or the rollback fails."""
    if connection.is_closed():
        return
    if isinstance(error, Exception):
        try:
            await connection.execute("rollback")
            return
        except Exception:  # closed below
            pass
    connection.terminate()
