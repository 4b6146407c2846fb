"""One worker slot: the loop that fetches a job, runs it and records its outcome.

A worker with ``concurrency=N`` runs N slots side by side (Graphile Worker calls each one a
"worker"). Each slot loops: work out the forbidden flags, fetch one job from the
:class:`JobSource`, run it with the :class:`TaskRunner`, hand the outcome to the
:class:`JobReleaser`, and go again at once. With nothing to do it waits ``poll_interval``
seconds or until it is nudged. Fetch errors never end a continuous slot: it waits (with a
capped backoff) and tries again. In run-once mode a slot ends when nothing is runnable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

from .._store import Failure, FetchedJob
from ..events import JobEvent, SlotEvent, WorkerEvents
from ..log_format import job_fields
from ._fetch import JobSource
from ._release import JobReleaser, Written
from ._retry import FETCH_ERROR_BACKOFF
from ._runner import Outcome, TaskRunner, is_final, log_outcome

logger = logging.getLogger("sqlalchemy_graphile.worker")

#: Releases a job (recording ``failure``, or completing it when ``None``) and fetches the
#: slot's next job with the forbidden flags given, in one statement; returns the write's
#: :data:`Written` and the next job, if one was runnable.
Chain = Callable[
    [FetchedJob, Failure | None, Sequence[str] | None],
    Awaitable[tuple[Written, FetchedJob | None]],
]


class FetchHealth:
    """Logs fetch failures once per outage (shared by a pool's slots), and the recovery."""

    def __init__(self) -> None:
        self._failing = False

    def failed(self, error: BaseException) -> None:
        if self._failing:
            logger.debug("fetching jobs failed again: %s", error)
            return
        self._failing = True
        logger.error("fetching jobs failed; retrying with backoff: %s", error, exc_info=error)

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("fetching jobs works again")


class Slot:
    """One slot's loop and state. :meth:`run` is the slot's task."""

    def __init__(
        self,
        *,
        pool_id: str,
        continuous: bool,
        poll_interval: float,
        source: JobSource,
        releaser: JobReleaser,
        runner: TaskRunner,
        events: WorkerEvents,
        forbidden_flags: Callable[[], Awaitable[list[str] | None]] | None,
        health: FetchHealth,
        chain: Chain | None = None,
    ) -> None:
        self.slot_id = f"sgworker-{secrets.token_hex(9)}"
        self.pool_id = pool_id
        self._continuous = continuous
        self._poll_interval = poll_interval
        self._source = source
        self._releaser = releaser
        self._runner = runner
        self._events = events
        self._forbidden_flags = forbidden_flags
        self._health = health
        self._chain = chain
        self._active = True
        self._waiting = False
        self._again = False
        self._wake = asyncio.Event()
        #: The job this slot holds (from fetch until its outcome is written).
        self.job: FetchedJob | None = None
        #: Whether the held job's task is running (as opposed to being released).
        self.running = False
        #: Set by a forceful shutdown that failed the held job itself.
        self.abandoned = False

    # -- called by the pool ----------------------------------------------------------

    def nudge(self) -> bool:
        """Fetch now if idle (returns ``True``); if busy, fetch again at once should the
        current fetch come back empty (returns ``False``)."""
        if self._waiting:
            self._wake.set()
            return True
        self._again = True
        return False

    def release(self) -> None:
        """Stop after the current job (at once if idle)."""
        if self._active:
            self._active = False
            self._emit("worker:release")
            self._wake.set()

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        """The slot's task: loop until released (or, in run-once mode, out of jobs).
        Raises the error of a fetch in run-once mode, or of a write of an outcome."""
        error: BaseException | None = None
        try:
            await self._loop()
        except Exception as caught:
            error = caught
            raise
        finally:
            self._active = False
            self._emit("worker:stop", error=error)

    async def _loop(self) -> None:
        fetch_failures = 0
        while self._active:
            self._again = False
            try:
                flags = None if self._forbidden_flags is None else await self._forbidden_flags()
                self._emit("worker:getJob:start")
                fetched = await self._source.get_job(flags)
            except Exception as error:
                self._emit("worker:getJob:error", error=error)
                if not self._continuous:
                    raise
                self._health.failed(error)
                delay = min(FETCH_ERROR_BACKOFF.delay(fetch_failures), self._poll_interval)
                fetch_failures += 1
                await self._idle(delay)
                continue
            if fetch_failures:
                fetch_failures = 0
                self._health.succeeded()
            if fetched is None:
                self._emit("worker:getJob:empty")
                if not self._continuous:
                    return
                if not self._again:
                    await self._idle(self._poll_interval)
                continue
            # With a chain, each release also fetches the next job, until none is runnable.
            next_job: FetchedJob | None = fetched
            while next_job is not None:
                next_job = await self._process(next_job)

    async def _idle(self, seconds: float) -> None:
        if not self._active:
            return
        self._wake.clear()
        self._waiting = True
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        finally:
            self._waiting = False

    async def _process(self, fetched: FetchedJob) -> FetchedJob | None:
        """Run ``fetched`` and record its outcome; return the next job when the release
        fetched one too."""
        self.job = fetched
        self.running = True
        self._emit_job("job:start", fetched)
        started = time.perf_counter()
        try:
            outcome = await self._runner.run(fetched)
        finally:
            self.running = False
        if self.abandoned:
            return None
        millis = (time.perf_counter() - started) * 1000
        next_job: FetchedJob | None = None
        chain = await self._chain_now()
        try:
            if chain is not None:
                failure = None
                if not outcome.succeeded:
                    failure = Failure(
                        fetched,
                        outcome.message or "the job failed",
                        outcome.replacement_payload,
                        outcome.permanent,
                    )
                written, next_job = await chain[0](fetched, failure, chain[1])
            elif outcome.succeeded:
                written = await self._releaser.complete(fetched)
            else:
                written = await self._releaser.fail(
                    fetched,
                    outcome.message or "the job failed",
                    outcome.replacement_payload,
                    permanent=outcome.permanent,
                )
        except Exception as fatal:
            self._emit("worker:fatalError", error=fatal, job=fetched, job_error=outcome.error)
            logger.error(
                "could not record the outcome of job %s (%s); this worker slot stops",
                fetched.id,
                fetched.task_identifier,
                exc_info=fatal,
                extra=job_fields(fetched.job),
            )
            raise
        self.job = next_job
        if outcome.succeeded and not self._success_observed():
            return next_job  # reporting it would neither log nor emit anything
        if written.done():
            self._report(fetched, outcome, millis, written)
        else:  # batched: reported once the batch is written
            written.add_done_callback(lambda w: self._report(fetched, outcome, millis, w))
        return next_job

    async def _chain_now(self) -> tuple[Chain, list[str] | None] | None:
        """The chain and the forbidden flags for its fetch, when this release should fetch
        the next job too: the slot is still active and the flags could be worked out (an
        error there is left to the next fetch of the loop, which reports it)."""
        if self._chain is None or not self._active:
            return None
        if self._forbidden_flags is None:
            return self._chain, None
        try:
            flags = await self._forbidden_flags()
        except Exception:
            return None
        return self._chain, flags

    def _success_observed(self) -> bool:
        """Whether reporting a success would do anything: log it (info level) or emit an
        event someone listens to. Asked when the run ends, so with batched release a
        callback subscribed while the job's batch is being written misses that job."""
        if logger.isEnabledFor(logging.INFO):
            return True
        return self._events.listening("job:success", "job:complete", "job:fenced")

    def _report(
        self, fetched: FetchedJob, outcome: Outcome, millis: float, written: Written
    ) -> None:
        """Log and emit the outcome once it is recorded; ``job:fenced`` instead when this
        pool had lost the job's lock. Nothing for a write that failed (``worker:fatalError``
        or ``pool:fatalError`` reported it)."""
        if written.cancelled() or written.exception() is not None:
            return
        if not written.result():
            self._emit_job("job:fenced", fetched, outcome)
            return
        if outcome.succeeded:
            if logger.isEnabledFor(logging.INFO):  # else the Job need not be built
                log_outcome(logger, fetched.job, outcome, millis)
            self._emit_job("job:success", fetched)
        else:
            log_outcome(logger, fetched.job, outcome, millis)
            self._emit_job("job:error", fetched, outcome)
            if is_final(fetched.job, outcome):
                self._emit_job("job:failed", fetched, outcome)
        self._emit_job("job:complete", fetched, outcome)

    # -- events ----------------------------------------------------------------------

    def _emit(
        self,
        name: str,
        *,
        error: BaseException | None = None,
        job: FetchedJob | None = None,
        job_error: BaseException | None = None,
    ) -> None:
        if not self._events.listening(name):
            return
        self._events.emit(
            SlotEvent(
                name=name,
                pool_id=self.pool_id,
                worker_id=self.slot_id,
                error=error,
                job=job.job if job is not None else None,
                job_error=job_error,
            )
        )

    def _emit_job(self, name: str, fetched: FetchedJob, outcome: Outcome | None = None) -> None:
        if not self._events.listening(name):
            return
        self._events.emit(
            JobEvent(
                name=name,
                pool_id=self.pool_id,
                worker_id=self.slot_id,
                job=fetched.job,
                error=outcome.error if outcome is not None else None,
                batch_errors=outcome.batch_errors if outcome is not None else None,
            )
        )
