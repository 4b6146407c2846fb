"""Job stores: the one seam between the worker's parts and the database.

A :class:`JobStore` is the worker's database for one schema and one lock owner (the pool
id). The local queue, the slots, the releasers, the stale-lock sweep and in-task adds get a
store; none of them holds a connection pool or writes SQL. The statements come from the
query catalog (:mod:`sqlalchemy_graphile._catalog`).

Implementations:

* :class:`~sqlalchemy_graphile._store._asyncpg.AsyncpgJobStore`: on an asyncpg pool, for
  the worker (every call is a transaction of its own);
* :class:`~sqlalchemy_graphile._store._sqlalchemy.SqlAlchemyJobStore`: on a SQLAlchemy
  connection, joining its transaction (``run_jobs`` runs a test's jobs through it);
* an in-memory store in the test suite, checked against both by one contract suite.

Beside it, the same seam for the other parts: a ``CronStore`` for the cron scheduler
(:mod:`._cron`, on asyncpg) and a ``RecoveryStore`` for the heartbeat and the recovery sweep
(:mod:`._recovery`, on asyncpg for the worker and on SQLAlchemy for ``WorkerUtils``). Each
operation of a job store is a call of :mod:`._calls` (statement, values, how its rows
read back), so the stores differ only in how they run it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from .._job_input import NewJob
from ..job import Job
from ._types import Failure, FetchedJob, TaskIds, fetched_job

__all__ = ["Failure", "FetchedJob", "JobStore", "TaskIds", "fetched_job"]


class JobStore(Protocol):
    """The database operations of a worker: one schema, one lock owner (:attr:`pool_id`).

    Database errors propagate as the driver raises them; callers decide what to retry.
    """

    @property
    def pool_id(self) -> str:
        """The lock owner this store locks and releases jobs as."""

    async def task_ids(self, identifiers: Sequence[str], *, register: bool = True) -> TaskIds:
        """The ids of ``identifiers``; with ``register`` a task row is first made for each
        identifier that has none (without, identifiers with no row are left out)."""

    async def fetch(
        self,
        tasks: TaskIds,
        batch_size: int,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> list[FetchedJob]:
        """Lock up to ``batch_size`` runnable jobs of ``tasks`` (never two of one named
        queue), best first (priority, then ``run_at``), each attempt counted, and lock their
        named queues. Jobs with any of ``forbidden_flags`` are skipped; ``now`` replaces
        the database's clock when given."""

    async def complete(self, jobs: Sequence[FetchedJob]) -> set[int]:
        """Delete ``jobs`` and unlock their queues, where this owner still holds them;
        return the ids deleted (the others were fenced)."""

    async def fail(self, failures: Sequence[Failure]) -> set[int]:
        """Record ``failures``: message, retry with exponential backoff (or no retry when
        permanent), payload replaced when given, jobs and queues unlocked, where this owner
        still holds them; return the ids recorded."""

    async def release_and_fetch(
        self,
        release: FetchedJob | Failure,
        tasks: TaskIds,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> tuple[bool, FetchedJob | None]:
        """Complete ``release`` (a :class:`FetchedJob`) or record it (a :class:`Failure`),
        as :meth:`complete` / :meth:`fail` do, and fetch the next job as :meth:`fetch`
        with a batch of one does, in one transaction. Returns whether the release was
        recorded (``False``: fenced) and the next job, if any. The released job's queue is
        not fetched from in the same call."""

    async def fail_held(self, job_ids: Sequence[int], message: str) -> list[int]:
        """Fail the jobs a stopping worker still holds with one ``message`` (attempt
        counted, normal backoff, queues unlocked); return the ids updated."""

    async def give_back(self, job_ids: Sequence[int]) -> int:
        """Unlock jobs that were fetched but never started (attempt refunded, queues
        unlocked) where this owner holds them; return how many were given back."""

    async def jobs(self, job_ids: Sequence[int]) -> list[FetchedJob]:
        """The jobs with ``job_ids`` as stored now, by id (missing ones left out)."""

    async def reset_stale_locks(self, now: datetime | None = None) -> None:
        """Clear job and queue locks older than four hours (a cleared job is runnable at
        once; its lost attempt still counts). ``now`` replaces the database's clock."""

    async def add_job(self, job: NewJob) -> Job:
        """Add ``job`` (its key and key mode honoured); return the inserted or updated job."""

    async def add_jobs(self, jobs: Sequence[NewJob], *, preserve_run_at: bool = False) -> list[Job]:
        """Add ``jobs`` (job keys honoured; ``preserve_run_at`` keeps the ``run_at`` of a
        job whose key is taken) and return the job of ``jobs[i]`` at index ``i``."""
