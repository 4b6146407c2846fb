"""Releasers: how a finished job's outcome reaches the database.

:class:`JobReleaser` is the seam: the slot loop hands every outcome to
:meth:`~JobReleaser.complete` or :meth:`~JobReleaser.fail`, and the pool calls
:meth:`~JobReleaser.release` when it stops. :class:`DirectReleaser` writes each outcome
with one statement and waits for it; :class:`BatchedReleaser` gathers
completions and / or failures for a short window and writes each window with one statement
(``complete_job_batch_delay`` / ``fail_job_batch_delay``).

Every write is guarded by the lock owner: when the pool no longer holds a job's lock (a
sweep gave it back and another worker may have taken it), nothing is written for that job,
its queue stays as it is, and a warning names the job: the job is *fenced*.
:meth:`~JobReleaser.complete` and :meth:`~JobReleaser.fail` therefore return a
:data:`Written` future that resolves to whether the outcome was recorded (at once for
:class:`DirectReleaser`, when the batch is written for :class:`BatchedReleaser`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from .._store import Failure, FetchedJob, JobStore
from ..errors import WorkerStateError
from ..log_format import job_fields
from ._fetch import DirectJobSource
from ._observer import LatencyObserver
from ._retry import WRITE_ERROR_BACKOFF, is_connection_error, with_retries

logger = logging.getLogger("sqlalchemy_graphile.worker")

T = TypeVar("T")

#: Resolves to ``True`` when a job's outcome was recorded, ``False`` when the job was fenced
#: (this pool no longer held its lock); to an exception when the write failed for good.
Written = asyncio.Future[bool]


def _written(recorded: bool) -> Written:
    future: Written = asyncio.get_running_loop().create_future()
    future.set_result(recorded)
    return future


class JobReleaser(Protocol):
    """Where a worker slot sends the outcome of each job it ran."""

    async def complete(self, job: FetchedJob) -> Written:
        """The job succeeded: delete it and unlock its queue."""

    async def fail(
        self,
        job: FetchedJob,
        message: str,
        replacement_payload: str | None,
        *,
        permanent: bool = False,
    ) -> Written:
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
    database error propagates. An ``observer`` is told how long each write took.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        queues_released: Callable[[int], None] = lambda _count: None,
        observer: LatencyObserver | None = None,
    ) -> None:
        self._store = store
        self._queues_released = queues_released
        self._observer = observer

    async def complete(self, job: FetchedJob) -> Written:
        return await self._write(job, "completion", lambda: self._store.complete((job,)))

    async def fail(
        self,
        job: FetchedJob,
        message: str,
        replacement_payload: str | None,
        *,
        permanent: bool = False,
    ) -> Written:
        failure = Failure(job, message, replacement_payload, permanent)
        return await self._write(job, "failure", lambda: self._store.fail((failure,)))

    async def release_and_fetch(
        self,
        job: FetchedJob,
        failure: Failure | None,
        source: DirectJobSource,
        forbidden_flags: Sequence[str] | None,
    ) -> tuple[Written, FetchedJob | None]:
        """Complete ``job`` (or record ``failure``) and fetch the slot's next job from
        ``source`` in one statement: one commit per job instead of two. Falls back to a
        release alone when the source hands out no more jobs. Outages are waited out as
        for any write; the next job is ``None`` when none was runnable (the caller then
        fetches as usual: the released job's queue is never fetched from here)."""
        fetch = await source.next_fetch()
        if fetch is None:
            if failure is None:
                return await self.complete(job), None
            return await self.fail(
                job, failure.message, failure.replacement_payload, permanent=failure.permanent
            ), None
        tasks, now = fetch
        release = job if failure is None else failure
        what = "completion" if failure is None else "failure"
        observer = self._observer
        started = time.perf_counter() if observer is not None else 0.0
        recorded, next_job = await write_waiting_out_outages(
            lambda: self._store.release_and_fetch(
                release, tasks, forbidden_flags=forbidden_flags, now=now
            ),
            f"the {what} of job {job.id}",
        )
        if observer is not None:
            elapsed = time.perf_counter() - started
            observer.released(elapsed, 1)
            observer.fetched(elapsed, 0 if next_job is None else 1)
        if not recorded:
            log_fenced([job], what)
        if job.queue_id is not None:
            self._queues_released(1)
        if next_job is not None:
            source.took(next_job)
        return _written(recorded), next_job

    async def _write(
        self, job: FetchedJob, what: str, write: Callable[[], Awaitable[set[int]]]
    ) -> Written:
        """Write one outcome (waiting out outages); log when the job was fenced."""
        observer = self._observer
        started = time.perf_counter() if observer is not None else 0.0
        ids = await write_waiting_out_outages(write, f"the {what} of job {job.id}")
        if observer is not None:
            observer.released(time.perf_counter() - started, 1)
        recorded = job.id in ids
        if not recorded:
            log_fenced([job], what)
        if job.queue_id is not None:
            self._queues_released(1)
        return _written(recorded)

    async def release(self) -> None:
        """Nothing is buffered: every write was awaited."""


async def write_waiting_out_outages(
    statement: Callable[[], Awaitable[T]],
    what: str,
    *,
    on_outage: Callable[[], None] = lambda: None,
) -> T:
    """Run ``statement`` with :func:`with_retries`; while the database is unreachable, try
    again with a capped backoff until it is back (calling ``on_outage()`` at the first
    such failure). Other errors propagate. ``what`` names the write in log messages."""
    failures = 0
    while True:
        try:
            result = await with_retries(statement)
        except Exception as error:
            if not is_connection_error(error):
                raise
            if failures == 0:
                on_outage()
                logger.warning(
                    "cannot record %s: the database is unreachable (%s); retrying until it is back",
                    what,
                    error,
                )
            await asyncio.sleep(WRITE_ERROR_BACKOFF.delay(failures))
            failures += 1
            continue
        if failures:
            logger.info("recorded %s after %d retries", what, failures)
        return result


class _Batcher(Generic[T]):
    """Gathers items for ``delay`` seconds (0: until the event loop's next turn) from the
    first one, then hands them to ``write`` as one list, in a background task. ``write``
    returns, for each item in order, whether it was recorded; :meth:`add`'s future resolves
    to that.

    While a write waits for the database to come back, further :meth:`add` calls wait too
    (back-pressure: slots stop taking jobs). A write that fails otherwise is reported to
    ``on_fatal(error, items)``, and the items' futures resolve to the error; the items stay
    locked by this pool.
    """

    def __init__(
        self,
        delay: float,
        write: Callable[[list[T]], Awaitable[list[bool]]],
        on_fatal: Callable[[Exception, list[T]], None],
    ) -> None:
        self._delay = delay
        self._write = write
        self._on_fatal = on_fatal
        self._items: list[tuple[T, Written]] | None = None
        self._timer: asyncio.Handle | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._released = False

    async def add(self, item: T) -> Written:
        if not self._flowing.is_set():
            await self._flowing.wait()
        if self._released:
            raise WorkerStateError("the batch writer was released; no more outcomes can be written")
        items = self._items
        loop = asyncio.get_running_loop()
        if items is None:
            items = self._items = []
            if self._delay > 0:
                self._timer = loop.call_later(self._delay, self._flush)
            else:
                self._timer = loop.call_soon(self._flush)
        written: Written = loop.create_future()
        items.append((item, written))
        return written

    async def release(self) -> None:
        """Write what is gathered now and wait for every write in progress."""
        self._flush()
        while self._writes:
            await asyncio.wait(set(self._writes))
        self._released = True

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, None
        if items:
            task = asyncio.ensure_future(self._run(items))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _run(self, items: list[tuple[T, Written]]) -> None:
        try:
            recorded = await self._write([item for item, _written in items])
        except Exception as error:
            self._on_fatal(error, [item for item, _written in items])
            for _item, written in items:
                written.set_exception(error)
        else:
            for (_item, written), done in zip(items, recorded, strict=True):
                written.set_result(done)
        finally:
            self._flowing.set()

    def hold(self) -> None:
        """Make :meth:`add` wait until the write in progress ends."""
        self._flowing.clear()


class BatchedReleaser:
    """Writes completions (when ``complete_delay`` is not ``None``) and failures (when
    ``fail_delay`` is not ``None``) in batches: one statement per window, for queued and
    unqueued jobs alike; the other kind of outcome is written at once, as
    :class:`DirectReleaser` does.

    :meth:`complete` and :meth:`fail` return as soon as the outcome is gathered. A batch is
    retried per :func:`with_retries` and waits out database outages; any other error is
    fatal: ``on_fatal(action, error)`` is called (``"completeJob"`` or ``"failJob"``; the
    pool then shuts down gracefully) and the batch's jobs stay locked by this pool until
    the stale-lock sweep frees them, so none is lost or released twice.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        complete_delay: float | None,
        fail_delay: float | None,
        on_fatal: Callable[[str, Exception], None],
        queues_released: Callable[[int], None] = lambda _count: None,
        observer: LatencyObserver | None = None,
    ) -> None:
        self._store = store
        self._on_fatal = on_fatal
        self._queues_released = queues_released
        self._observer = observer
        self._direct = DirectReleaser(store, queues_released=queues_released, observer=observer)
        self._completions: _Batcher[FetchedJob] | None = None
        self._failures: _Batcher[Failure] | None = None
        if complete_delay is not None:
            self._completions = _Batcher(
                complete_delay, self._write_completions, self._completions_failed
            )
        if fail_delay is not None:
            self._failures = _Batcher(fail_delay, self._write_failures, self._failures_failed)

    async def complete(self, job: FetchedJob) -> Written:
        if self._completions is None:
            return await self._direct.complete(job)
        return await self._completions.add(job)

    async def fail(
        self,
        job: FetchedJob,
        message: str,
        replacement_payload: str | None,
        *,
        permanent: bool = False,
    ) -> Written:
        if self._failures is None:
            return await self._direct.fail(job, message, replacement_payload, permanent=permanent)
        return await self._failures.add(Failure(job, message, replacement_payload, permanent))

    async def release(self) -> None:
        """Write every gathered outcome and wait for the writes (a write that fails is
        reported to ``on_fatal``, as always)."""
        for batcher in (self._completions, self._failures):
            if batcher is not None:
                await batcher.release()

    async def _write_completions(self, jobs: list[FetchedJob]) -> list[bool]:
        queued = sum(1 for job in jobs if job.queue_id is not None)
        assert self._completions is not None
        observer = self._observer
        started = time.perf_counter() if observer is not None else 0.0
        recorded = await write_waiting_out_outages(
            lambda: self._store.complete(jobs),
            f"the completion of {len(jobs)} job(s)",
            on_outage=self._completions.hold,
        )
        if observer is not None:
            observer.released(time.perf_counter() - started, len(jobs))
        fenced = [job for job in jobs if job.id not in recorded]
        if fenced:
            log_fenced(fenced, "completion")
        if queued:
            self._queues_released(queued)
        return [job.id in recorded for job in jobs]

    async def _write_failures(self, failures: list[Failure]) -> list[bool]:
        assert self._failures is not None
        observer = self._observer
        started = time.perf_counter() if observer is not None else 0.0
        recorded = await write_waiting_out_outages(
            lambda: self._store.fail(failures),
            f"the failure of {len(failures)} job(s)",
            on_outage=self._failures.hold,
        )
        if observer is not None:
            observer.released(time.perf_counter() - started, len(failures))
        fenced = [f.job for f in failures if f.job.id not in recorded]
        if fenced:
            log_fenced(fenced, "failure")
        queued = sum(1 for f in failures if f.job.queue_id is not None)
        if queued:
            self._queues_released(queued)
        return [f.job.id in recorded for f in failures]

    def _completions_failed(self, error: Exception, jobs: list[FetchedJob]) -> None:
        self._fatal("completeJob", "complete", error, [job.id for job in jobs])

    def _failures_failed(self, error: Exception, failures: list[Failure]) -> None:
        self._fatal("failJob", "fail", error, [f.job.id for f in failures])

    def _fatal(self, action: str, verb: str, error: Exception, ids: list[int]) -> None:
        logger.error(
            "could not %s job(s) %s: %s; they stay locked by this worker until the stale-lock "
            "sweep frees them, and the worker shuts down",
            verb,
            ", ".join(map(str, ids)),
            error,
        )
        self._on_fatal(action, error)


async def fail_jobs_with_message(
    store: JobStore, job_ids: Sequence[int], message: str
) -> list[int]:
    """Fail the jobs a stopping pool still holds with ``message`` (attempt consumed, normal
    backoff, queues unlocked); return the ids actually updated. Retried per
    :func:`with_retries`; other errors propagate."""
    return await with_retries(lambda: store.fail_held(job_ids, message))


def log_fenced(jobs: Sequence[FetchedJob], what: str) -> None:
    """Warn, naming each job, that this pool no longer held its lock, so its ``what``
    (completion, failure) was not recorded."""
    for job in jobs:
        logger.warning(
            "job %s (%s) is no longer locked by this worker, so its %s was not recorded: it "
            "was fenced. Its lock was given back while it ran (the recovery sweep judged this "
            "worker dead, or the four-hour stale-lock sweep ran), and another worker may be "
            "running it",
            job.id,
            job.job.task_identifier,
            what,
            extra=job_fields(job.job),
        )
