"""An in-memory job store, for unit tests of the worker's parts without a database.

:class:`FakeDatabase` holds the tables (tasks, named queues, jobs) and a clock;
:meth:`FakeDatabase.store` gives a :class:`FakeJobStore` on them for one lock owner, so that
two stores on one database play two workers. The store follows the
:class:`~sqlalchemy_graphile._store.JobStore` protocol as the database does, and
``tests/integration/test_job_store_contract.py`` holds it to the real stores:

* a job is runnable when it is unlocked, has attempts left, its ``run_at`` is not after
  ``now``, its task is asked for, it has none of the forbidden flags, and its named queue
  (if any) is unlocked; the best come first (priority, then ``run_at``, then id), and a
  batch never holds two jobs of one named queue;
* a fetch counts the attempt and locks the job and its queue for the store's pool id;
  complete, fail, give back and ``fail_held`` touch only jobs that pool id still holds;
* a failure's retry runs at ``greatest(now, run_at) + exp(least(attempts, 10))`` seconds; a
  permanent one sets ``attempts`` to ``max_attempts``;
* :meth:`FakeJobStore.release_and_fetch` chooses the next job as the tables were before
  the release, as its one statement does: the released job's queue is not fetched from;
* locks older than four hours are cleared by :meth:`FakeJobStore.reset_stale_locks`.

``now`` is :attr:`FakeDatabase.clock` (a :class:`FakeClock` unless another is injected),
where the database would use the time its transaction began.

Adds follow the ``add_jobs`` and ``add_job`` SQL functions, every key mode included
(``replace``, ``preserve_run_at``, ``unsafe_dedupe``); no ``jobs:insert`` notification is
sent. Two jobs with one key in one :meth:`FakeJobStore.add_jobs` call raise
:class:`ValueError`, as the database refuses such a call.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy_graphile._catalog._worker import id_list, recorded_ids
from sqlalchemy_graphile._job_input import NewJob, from_raw
from sqlalchemy_graphile._store import Failure, FetchedJob, TaskIds
from sqlalchemy_graphile.job import Job
from sqlalchemy_graphile.job_spec import JobKeyMode, JobSpec

#: How old a lock gets before :meth:`FakeJobStore.reset_stale_locks` clears it.
LOCK_TIMEOUT = timedelta(hours=4)

#: The ``max_attempts`` of a job added without one.
DEFAULT_MAX_ATTEMPTS = 25


class FakeClock:
    """A clock that stands still until told: :meth:`advance` or :meth:`set`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by ``delta``; return the new time."""
        self._now += delta
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now


def backoff(now: datetime, run_at: datetime, attempts: int) -> datetime:
    """When a failed job is retried: ``greatest(now, run_at) + exp(least(attempts, 10))``
    seconds."""
    return max(now, run_at) + timedelta(seconds=math.exp(min(attempts, 10)))


@dataclass
class _Queue:
    id: int
    name: str
    locked_at: datetime | None = None
    locked_by: str | None = None


@dataclass
class _Row:
    """One row of the jobs table."""

    id: int
    queue_id: int | None
    task_id: int
    payload_json: str
    priority: int
    run_at: datetime
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    key: str | None
    flags: dict[str, bool] | None
    attempts: int = 0
    last_error: str | None = None
    locked_at: datetime | None = None
    locked_by: str | None = None
    revision: int = 0

    @property
    def is_available(self) -> bool:
        return self.locked_at is None and self.attempts < self.max_attempts


@dataclass
class FakeDatabase:
    """The tables the fake stores share, and the clock that is their ``now()``."""

    clock: Callable[[], datetime] = field(default_factory=FakeClock)
    tasks: dict[int, str] = field(default_factory=dict)
    queues: dict[int, _Queue] = field(default_factory=dict)
    rows: dict[int, _Row] = field(default_factory=dict)
    _next_job_id: int = 1

    def store(self, pool_id: str = "fake-pool") -> FakeJobStore:
        """A store on these tables that locks as ``pool_id``."""
        return FakeJobStore(self, pool_id)

    # -- names --------------------------------------------------------------------------

    def task_id(self, identifier: str) -> int | None:
        """The id of ``identifier``'s task row, if it has one."""
        return next((i for i, name in self.tasks.items() if name == identifier), None)

    def register_task(self, identifier: str) -> int:
        """The id of ``identifier``'s task row, made if it has none."""
        task_id = self.task_id(identifier)
        if task_id is None:
            task_id = len(self.tasks) + 1
            self.tasks[task_id] = identifier
        return task_id

    def queue_id(self, name: str | None) -> int | None:
        if name is None:
            return None
        for queue in self.queues.values():
            if queue.name == name:
                return queue.id
        queue_id = len(self.queues) + 1
        self.queues[queue_id] = _Queue(queue_id, name)
        return queue_id

    def job(self, row: _Row) -> Job:
        """The :class:`Job` of ``row`` as it is now."""
        queue = None if row.queue_id is None else self.queues[row.queue_id].name
        return Job(
            id=row.id,
            task_identifier=self.tasks[row.task_id],
            queue_name=queue,
            payload_json=row.payload_json,
            priority=row.priority,
            run_at=row.run_at,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            key=row.key,
            locked_at=row.locked_at,
            locked_by=row.locked_by,
            revision=row.revision,
            flags=None if row.flags is None else dict(row.flags),
        )

    def fetched(self, row: _Row) -> FetchedJob:
        return FetchedJob(self.job(row), row.queue_id)

    # -- locks --------------------------------------------------------------------------

    def unlock_queue(self, row: _Row, pool_id: str) -> None:
        """Unlock the queue of ``row`` if ``pool_id`` holds it."""
        if row.queue_id is None:
            return
        queue = self.queues[row.queue_id]
        if queue.locked_by == pool_id:
            queue.locked_at = queue.locked_by = None

    def held(self, job_ids: Sequence[int], pool_id: str) -> list[_Row]:
        """The rows of ``job_ids`` that ``pool_id`` holds (each once, by id)."""
        rows = (self.rows.get(job_id) for job_id in sorted(set(job_ids)))
        return [row for row in rows if row is not None and row.locked_by == pool_id]

    # -- adding -------------------------------------------------------------------------

    def add(self, identifier: str = "task", payload: Any = None, **spec: Any) -> Job:
        """Add one job at once (``spec``: :class:`JobSpec` fields), as ``add_job`` would,
        without going through a store."""
        job = from_raw(identifier, payload, JobSpec(**spec))
        return self.job(self.add_jobs([job], preserve_run_at=False)[0])

    def read(self, job_id: int) -> Job | None:
        """The job ``job_id`` as stored now, or ``None`` when there is none."""
        row = self.rows.get(job_id)
        return None if row is None else self.job(row)

    def add_jobs(self, jobs: Sequence[NewJob], preserve_run_at: bool) -> list[_Row]:
        """What the ``add_jobs`` SQL function does (key modes in the specs are ignored)."""
        keys = [job.spec.job_key for job in jobs if job.spec.job_key is not None]
        if len(keys) != len(set(keys)):
            raise ValueError("add_jobs: two jobs with one key in one call")
        now = self.clock()
        for job in jobs:
            self.register_task(job.identifier)
            self.queue_id(job.spec.queue_name)
        taken = set(keys)
        for row in self.rows.values():
            # A running or dead job gives up its key, and will not be retried.
            if row.key in taken and not row.is_available:
                row.key = None
                row.attempts = row.max_attempts
                row.updated_at = now
        return [self._insert_or_update(job, preserve_run_at, now) for job in jobs]

    def add_unsafe_dedupe(self, job: NewJob) -> _Row:
        """What the ``add_job`` SQL function does in the ``unsafe_dedupe`` mode: the job
        that holds the key, whatever its state, only gets its revision bumped."""
        now = self.clock()
        existing = self._by_key(job.spec.job_key)
        if existing is not None:
            existing.revision += 1
            existing.updated_at = now
            return existing
        self.register_task(job.identifier)
        self.queue_id(job.spec.queue_name)
        return self._insert(job, now)

    def _by_key(self, key: str | None) -> _Row | None:
        if key is None:
            return None
        return next((row for row in self.rows.values() if row.key == key), None)

    def _insert_or_update(self, job: NewJob, preserve_run_at: bool, now: datetime) -> _Row:
        existing = self._by_key(job.spec.job_key)
        if existing is None:
            return self._insert(job, now)
        spec = job.spec
        existing.queue_id = self.queue_id(spec.queue_name)
        existing.task_id = self.register_task(job.identifier)
        existing.payload_json = _merged_payload(existing.payload_json, job.payload_json)
        existing.max_attempts = spec.max_attempts or DEFAULT_MAX_ATTEMPTS
        if not (preserve_run_at and existing.attempts == 0):
            existing.run_at = spec.run_at or now
        existing.priority = spec.priority or 0
        existing.revision += 1
        existing.flags = _flags(job.flags)
        existing.attempts = 0
        existing.last_error = None
        existing.updated_at = now
        return existing

    def _insert(self, job: NewJob, now: datetime) -> _Row:
        spec = job.spec
        row = _Row(
            id=self._next_job_id,
            queue_id=self.queue_id(spec.queue_name),
            task_id=self.register_task(job.identifier),
            payload_json=job.payload_json,
            priority=spec.priority or 0,
            run_at=spec.run_at or now,
            max_attempts=spec.max_attempts or DEFAULT_MAX_ATTEMPTS,
            created_at=now,
            updated_at=now,
            key=spec.job_key,
            flags=_flags(job.flags),
        )
        self._next_job_id += 1
        self.rows[row.id] = row
        return row


def _flags(flags: list[str] | None) -> dict[str, bool] | None:
    return {flag: True for flag in flags} if flags else None


def _merged_payload(stored: str, added: str) -> str:
    """Two JSON arrays accumulate (batch jobs); anything else is replaced."""
    old: Any = json.loads(stored)
    new: Any = json.loads(added)
    if isinstance(old, list) and isinstance(new, list):
        return json.dumps(old + new)
    return added


class FakeJobStore:
    """A :class:`~sqlalchemy_graphile._store.JobStore` on a :class:`FakeDatabase`, locking
    as ``pool_id`` (see the module docstring). Every call takes effect at once, as if
    committed; none awaits anything, so calls never interleave.

    For tests of the parts that use it: :attr:`calls` lists the protocol methods called,
    in order, and :meth:`called` awaits them; :meth:`fail_next` makes the next call of a
    method raise instead of touching the tables.
    """

    def __init__(self, database: FakeDatabase, pool_id: str) -> None:
        self.database = database
        self._pool_id = pool_id
        #: ``(method, argument)`` of every call: the batch size of a fetch, the ids of the
        #: jobs released or given back, ``None`` for the others.
        self.calls: list[tuple[str, Any]] = []
        self._errors: dict[str, list[Exception]] = {}
        self._call_made = asyncio.Event()

    def fail_next(self, method: str, error: Exception) -> None:
        """Make the next call of ``method`` (``"fetch"``, ``"complete"``...) raise ``error``
        before it touches anything."""
        self._errors.setdefault(method, []).append(error)

    def count(self, method: str) -> int:
        """How many times ``method`` was called."""
        return sum(1 for name, _argument in self.calls if name == method)

    async def called(self, method: str, times: int = 1) -> None:
        """Return once ``method`` has been called ``times`` times in all."""
        while self.count(method) < times:
            self._call_made.clear()
            await self._call_made.wait()

    def _enter(self, method: str, argument: Any = None) -> None:
        self.calls.append((method, argument))
        self._call_made.set()
        errors = self._errors.get(method)
        if errors:
            raise errors.pop(0)

    @property
    def pool_id(self) -> str:
        return self._pool_id

    # -- tasks --------------------------------------------------------------------------

    async def task_ids(self, identifiers: Sequence[str], *, register: bool = True) -> TaskIds:
        self._enter("task_ids")
        by_id: dict[int, str] = {}
        for identifier in identifiers:
            database = self.database
            task_id = (
                database.register_task(identifier) if register else database.task_id(identifier)
            )
            if task_id is not None:
                by_id[task_id] = identifier
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
        self._enter("fetch", batch_size)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch size must be a positive int, not {batch_size!r}")
        now = self.database.clock() if now is None else now
        return self._lock(self._choose(tasks, batch_size, forbidden_flags, now), now)

    def _choose(
        self, tasks: TaskIds, batch_size: int, forbidden_flags: Sequence[str] | None, now: datetime
    ) -> list[_Row]:
        """The best runnable jobs, at most ``batch_size``, never two of one named queue."""
        database = self.database
        task_ids = recorded_ids(tasks.ids)
        forbidden = set(forbidden_flags or ())
        runnable = sorted(
            (
                row
                for row in database.rows.values()
                if row.is_available
                and row.run_at <= now
                and row.task_id in task_ids
                and not (forbidden and row.flags and forbidden & row.flags.keys())
                and (row.queue_id is None or database.queues[row.queue_id].locked_at is None)
            ),
            key=lambda row: (row.priority, row.run_at, row.id),
        )
        chosen: list[_Row] = []
        queues: set[int] = set()
        for row in runnable:
            if len(chosen) == batch_size:
                break
            if row.queue_id is not None:
                if row.queue_id in queues:
                    continue
                queues.add(row.queue_id)
            chosen.append(row)
        return chosen

    def _lock(self, rows: list[_Row], now: datetime) -> list[FetchedJob]:
        """Lock ``rows`` and their queues for this pool, counting the attempt."""
        database = self.database
        for row in rows:
            row.attempts += 1
            row.locked_by, row.locked_at = self._pool_id, now
            if row.queue_id is not None:
                queue = database.queues[row.queue_id]
                queue.locked_by, queue.locked_at = self._pool_id, now
        return [database.fetched(row) for row in rows]

    # -- outcomes -----------------------------------------------------------------------

    async def complete(self, jobs: Sequence[FetchedJob]) -> set[int]:
        self._enter("complete", [job.id for job in jobs])
        database = self.database
        # As the statements: queues are unlocked when any of the jobs was fetched in one.
        queued = any(job.queue_id is not None for job in jobs)
        rows = database.held([job.id for job in jobs], self._pool_id)
        for row in rows:
            del database.rows[row.id]
            if queued:
                database.unlock_queue(row, self._pool_id)
        return {row.id for row in rows}

    async def fail(self, failures: Sequence[Failure]) -> set[int]:
        self._enter("fail", [failure.id for failure in failures])
        database = self.database
        now = database.clock()
        # As the statements: one failure unlocks a queue when its job was fetched in one;
        # several always do.
        unlock = len(failures) != 1 or failures[0].job.queue_id is not None
        recorded: set[int] = set()
        for failure in failures:
            row = database.rows.get(failure.job.id)
            if row is None or row.locked_by != self._pool_id or row.id in recorded:
                continue
            self._record_failure(row, failure, now)
            if unlock:
                database.unlock_queue(row, self._pool_id)
            recorded.add(row.id)
        return recorded

    @staticmethod
    def _record_failure(row: _Row, failure: Failure, now: datetime) -> None:
        row.last_error = failure.message
        row.run_at = backoff(now, row.run_at, row.attempts)
        row.locked_at = row.locked_by = None
        if failure.replacement_payload is not None:
            row.payload_json = failure.replacement_payload
        if failure.permanent:
            row.attempts = row.max_attempts

    async def release_and_fetch(
        self,
        release: FetchedJob | Failure,
        tasks: TaskIds,
        *,
        forbidden_flags: Sequence[str] | None = None,
        now: datetime | None = None,
    ) -> tuple[bool, FetchedJob | None]:
        self._enter("release_and_fetch", [release.id])
        database = self.database
        now = database.clock() if now is None else now
        # The next job is chosen as the tables were before the release, as the one statement
        # sees them: the released job and its queue still look locked.
        chosen = self._choose(tasks, 1, forbidden_flags, now)
        row = database.rows.get(release.id)
        recorded = row is not None and row.locked_by == self._pool_id
        if row is not None and recorded:
            if isinstance(release, Failure):
                self._record_failure(row, release, database.clock())
            else:
                del database.rows[row.id]
            database.unlock_queue(row, self._pool_id)
        fetched = self._lock(chosen, now)
        return recorded, fetched[0] if fetched else None

    async def fail_held(self, job_ids: Sequence[int], message: str) -> list[int]:
        self._enter("fail_held", list(job_ids))
        database = self.database
        now = database.clock()
        rows = database.held(job_ids, self._pool_id)
        for row in rows:
            row.last_error = message
            row.run_at = backoff(now, row.run_at, row.attempts)
            row.locked_at = row.locked_by = None
            database.unlock_queue(row, self._pool_id)
        return [row.id for row in rows]

    async def give_back(self, job_ids: Sequence[int]) -> int:
        self._enter("give_back", list(job_ids))
        rows = self.database.held(job_ids, self._pool_id)
        for row in rows:
            row.attempts = max(0, row.attempts - 1)
            row.locked_at = row.locked_by = None
            self.database.unlock_queue(row, self._pool_id)
        return len(rows)

    # -- reading and maintenance -------------------------------------------------------

    async def jobs(self, job_ids: Sequence[int]) -> list[FetchedJob]:
        self._enter("jobs")
        rows = self.database.rows
        return [self.database.fetched(rows[i]) for i in sorted(set(job_ids)) if i in rows]

    async def reset_stale_locks(self, now: datetime | None = None) -> None:
        self._enter("reset_stale_locks")
        database = self.database
        now = database.clock() if now is None else now
        for row in database.rows.values():
            if row.locked_at is not None and row.locked_at < now - LOCK_TIMEOUT:
                row.locked_at = row.locked_by = None
                row.run_at = max(row.run_at, now)
        for queue in database.queues.values():
            if queue.locked_at is not None and queue.locked_at < now - LOCK_TIMEOUT:
                queue.locked_at = queue.locked_by = None

    # -- adding -------------------------------------------------------------------------

    async def add_job(self, job: NewJob) -> Job:
        self._enter("add_job")
        mode = job.spec.job_key_mode
        if mode is JobKeyMode.UNSAFE_DEDUPE and job.spec.job_key is not None:
            return self.database.job(self.database.add_unsafe_dedupe(job))
        rows = self.database.add_jobs([job], mode is JobKeyMode.PRESERVE_RUN_AT)
        return self.database.job(rows[0])

    async def add_jobs(self, jobs: Sequence[NewJob], *, preserve_run_at: bool = False) -> list[Job]:
        self._enter("add_jobs")
        return [self.database.job(row) for row in self.database.add_jobs(jobs, preserve_run_at)]
