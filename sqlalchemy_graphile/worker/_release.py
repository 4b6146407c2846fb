"""Releasers: how a finished job's outcome reaches the database.

:class:`JobReleaser` is the seam: the slot loop hands every outcome to
:meth:`~JobReleaser.complete` or :meth:`~JobReleaser.fail`, and the pool calls
:meth:`~JobReleaser.release` when it stops. :class:`DirectReleaser` writes each outcome
with one statement and waits for it (spec §2.4, §2.5); a releaser that batches writes can
take its place without touching the loop.

Every write is guarded by the lock owner: when the pool no longer holds a job's lock (the
sweep cleared it and another worker took the job), nothing is written and a warning says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import asyncpg

from ._jobs import FetchedJob
from ._retry import WRITE_ERROR_BACKOFF, is_connection_error, with_retries
from ._sql import Statements

logger = logging.getLogger("sqlalchemy_graphile.worker")


class JobReleaser(Protocol):
    """Where a worker slot sends the outcome of each job it ran."""

    async def complete(self, job: FetchedJob) -> None:
        """The job succeeded: delete it and unlock its queue."""

    async def fail(
        self,
        job: FetchedJob,
        message: str,
        replacement_payload: str | None,
        *,
        permanent: bool = False,
    ) -> None:
        """The job failed with ``message``: schedule its retry (or, when ``permanent``, use
        up its attempts), unlock it and its queue, and replace its payload with
        ``replacement_payload`` (JSON text) if given."""

    async def release(self) -> None:
        """Write anything still pending; no calls may follow."""


class DirectReleaser:
    """Writes each outcome at once with one statement, on the pool's asyncpg connections.

    Transient errors are retried per :func:`with_retries`. While the database is unreachable
    the write is retried with a capped backoff until it succeeds (the job stays locked by
    this pool meanwhile, so nothing else can run it) or the caller is cancelled. Any other
    database error propagates.
    """

    def __init__(self, pool: asyncpg.Pool, statements: Statements, pool_id: str) -> None:
        self._pool = pool
        self._statements = statements
        self._pool_id = pool_id

    async def complete(self, job: FetchedJob) -> None:
        statements = self._statements
        query = (
            statements.complete_jobs if job.queue_id is None else statements.complete_queued_jobs
        )
        count = await self._write(
            lambda: self._pool.fetchval(query, [job.id], self._pool_id), job, "completion"
        )
        if not count:
            _log_fenced(job, "completion")

    async def fail(
        self,
        job: FetchedJob,
        message: str,
        replacement_payload: str | None,
        *,
        permanent: bool = False,
    ) -> None:
        statements = self._statements
        query = statements.fail_job if job.queue_id is None else statements.fail_queued_job
        count = await self._write(
            lambda: self._pool.fetchval(
                query, job.id, self._pool_id, message, replacement_payload, permanent
            ),
            job,
            "failure",
        )
        if not count:
            _log_fenced(job, "failure")

    async def release(self) -> None:
        """Nothing is buffered: every write was awaited."""

    async def _write(
        self, statement: Callable[[], Awaitable[int | None]], job: FetchedJob, what: str
    ) -> int | None:
        failures = 0
        while True:
            try:
                result = await with_retries(statement)
            except Exception as error:
                if not is_connection_error(error):
                    raise
                if failures == 0:
                    logger.warning(
                        "cannot record the %s of job %s: the database is unreachable (%s); "
                        "retrying until it is back",
                        what,
                        job.id,
                        error,
                    )
                await asyncio.sleep(WRITE_ERROR_BACKOFF.delay(failures))
                failures += 1
                continue
            if failures:
                logger.info("recorded the %s of job %s after %d retries", what, job.id, failures)
            return result


async def fail_jobs_with_message(
    pool: asyncpg.Pool,
    statements: Statements,
    pool_id: str,
    job_ids: Sequence[int],
    message: str,
) -> list[int]:
    """Fail the jobs a stopping pool still holds with ``message`` (attempt consumed, normal
    backoff, queues unlocked); return the ids actually updated. Retried per
    :func:`with_retries`; other errors propagate."""
    rows = await with_retries(
        lambda: pool.fetch(statements.fail_jobs_with_message, list(job_ids), message, pool_id)
    )
    return [row["id"] for row in rows]


def _log_fenced(job: FetchedJob, what: str) -> None:
    logger.warning(
        "job %s (%s) is no longer locked by this worker, so its %s was not recorded: its "
        "lock was cleared (for example by the stale-lock sweep) and another worker may be "
        "running it",
        job.id,
        job.job.task_identifier,
        what,
    )
