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
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .._catalog import Catalog, Statement
from .._catalog._worker import flag_list, id_list, recorded_ids
from .._job_input import NewJob
from ..job import Job
from ._types import Failure, FetchedJob, TaskIds, fetched_job

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

    async def _value(self, statement: Statement, **values: Any) -> Any:
        return await self._pool.fetchval(statement.numbered, *statement.arguments(values))

    async def _rows(self, statement: Statement, **values: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._pool.fetch(
            statement.numbered, *statement.arguments(values)
        )
        return rows

    # -- tasks --------------------------------------------------------------------------

    async def task_ids(self, identifiers: Sequence[str], *, register: bool = True) -> TaskIds:
        names = list(identifiers)
        statements = self._statements
        async with self._pool.acquire() as connection:
            if register:
                await connection.execute(statements.register_tasks.numbered, names)
            rows = await connection.fetch(statements.task_ids.numbered, names)
        by_id = {row[0]: row[1] for row in rows}
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
        arguments = statement.arguments(values)
        if batch_size == 1:
            rows = await self._pool.fetch(statement.numbered, *arguments)
        else:
            rows = await fetch_without_jit(self._pool, statement.numbered, *arguments)
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
        failed = isinstance(release, Failure)
        statement = self._statements.release_and_fetch(
            failed=failed, with_flags=with_flags, app_time=now is not None
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
        row = await self._pool.fetchrow(statement.numbered, *statement.arguments(values))
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
        await self._pool.execute(statement.numbered, *statement.arguments(values))

    # -- adding -------------------------------------------------------------------------

    async def add_job(self, job: NewJob) -> Job:
        raise NotImplementedError

    async def add_jobs(self, jobs: Sequence[NewJob], *, preserve_run_at: bool = False) -> list[Job]:
        raise NotImplementedError


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
            await _end_transaction(connection, error)
            raise
        return rows


async def _end_transaction(connection: PoolConnectionProxy, error: BaseException) -> None:
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
