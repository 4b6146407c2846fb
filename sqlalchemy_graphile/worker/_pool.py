"""One run of a worker: its slots, wake-ups, maintenance and shutdown.

A :class:`WorkerPool` lives from ``Worker.run()`` (or ``run_once()``) to its return. It has
one lock owner id, ``concurrency`` slots sharing a job source (direct fetches, or the local
queue) and a releaser (one statement per outcome, or batches), and in continuous mode the
LISTEN connection and the stale-lock sweep.

Graceful shutdown: stop fetching (source, listener and sweep are released), let running jobs
finish and record their outcome, set ``abort_signal`` after
``graceful_shutdown_abort_timeout`` seconds, then flush the releaser. Forceful shutdown:
also fail every job whose task is still running with the shutdown message (the attempt
counts and the normal backoff applies) and cancel those tasks; slots still busy after
``FORCEFUL_STEP_TIMEOUT`` (task code that ignores cancellation) are cancelled and abandoned,
not awaited. Either way no lock of this pool is left behind, unless the database cannot be
reached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import asyncpg

from .._plugins import Plugins
from .._store import Failure, FetchedJob, JobStore
from ..context import JobAdder
from ..events import PoolErrorEvent, PoolEvent, SlotEvent, WorkerEvents
from ._fetch import DirectJobSource, JobSource
from ._listener import Listener
from ._local_queue import LocalQueue
from ._observer import LatencyObserver
from ._options import WorkerOptions, resolve_forbidden_flags
from ._release import (
    BatchedReleaser,
    DirectReleaser,
    JobReleaser,
    Written,
    fail_jobs_with_message,
)
from ._reset_locked import ResetLockedSweeper
from ._runner import TaskRunner, describe_error
from ._slot import Chain, FetchHealth, Slot
from ._task_ids import TaskIdentifiers

logger = logging.getLogger("sqlalchemy_graphile.worker")

#: Exit code recorded when a breaking migration is announced while running.
EXIT_SCHEMA_TOO_NEW = 57
#: Longest wait, in seconds, for each step of a forceful shutdown.
FORCEFUL_STEP_TIMEOUT = 5.0


class WorkerPool:
    """The running state of one worker run. Call :meth:`start`, then await
    :meth:`wait_closed`; shut down with :meth:`graceful_shutdown` or
    :meth:`forceful_shutdown`."""

    def __init__(
        self,
        *,
        options: WorkerOptions,
        continuous: bool,
        store: JobStore,
        notifier: asyncpg.Pool | None,
        events: WorkerEvents,
        adder: JobAdder,
        connect_listener: Callable[[], Awaitable[asyncpg.Connection]] | None,
        observer: LatencyObserver | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        pool_id = store.pool_id
        self.id = pool_id
        self.continuous = continuous
        #: Set after ``graceful_shutdown_abort_timeout`` once a shutdown has begun.
        self.abort_signal = asyncio.Event()
        #: 0, or 57 when a breaking migration was announced.
        self.exit_code = 0
        #: Errors that ended the run (a slot's fatal error, a failed shutdown step).
        self.errors: list[Exception] = []
        self._options = options
        self._store = store
        self._events = events
        self._executor = ThreadPoolExecutor(
            max_workers=options.concurrency, thread_name_prefix="sg-task"
        )
        task_ids = TaskIdentifiers(store, list(options.tasks))
        self._source: JobSource
        static_flags = options.forbidden_flags is not None and not callable(options.forbidden_flags)
        if options.local_queue_size is None or static_flags:
            # Forbidden flags make every fetch direct, so a local queue would stay idle.
            self._source = DirectJobSource(
                store,
                task_ids,
                use_local_time=options.use_local_time,
                continuous=continuous,
                observer=observer,
            )
        else:
            self._source = LocalQueue(
                store,
                task_ids,
                size=options.local_queue_size,
                ttl=options.local_queue_ttl,
                poll_interval=options.poll_interval,
                refetch_delay=options.local_queue_refetch_delay,
                continuous=continuous,
                use_local_time=options.use_local_time,
                events=events,
                on_major_error=self._major_error,
                observer=observer,
            )
        self._releaser: JobReleaser
        if options.complete_job_batch_delay is None and options.fail_job_batch_delay is None:
            self._releaser = DirectReleaser(
                store,
                queues_released=self._source.queues_released,
                observer=observer,
            )
        else:
            self._releaser = BatchedReleaser(
                store,
                complete_delay=options.complete_job_batch_delay,
                fail_delay=options.fail_job_batch_delay,
                on_fatal=self._batch_failed,
                queues_released=self._source.queues_released,
                observer=observer,
            )
        # Direct fetches and direct releases: each release fetches the slot's next job in
        # the same statement (one commit per job).
        self._chain: Chain | None = None
        if isinstance(self._source, DirectJobSource) and isinstance(self._releaser, DirectReleaser):
            self._chain = _chain(self._releaser, self._source)
        self._runner = TaskRunner(
            options.tasks,
            extensions=options.extensions,
            pool_id=pool_id,
            abort_signal=self.abort_signal,
            adder=adder,
            executor=self._executor,
            plugins=plugins,
        )
        self._health = FetchHealth()
        self._slots: dict[Slot, asyncio.Task[None]] = {}
        self._live: set[Slot] = set()
        self._listener: Listener | None = None
        if continuous and options.listen and connect_listener is not None:
            self._listener = Listener(
                connect=connect_listener,
                events=events,
                pool_id=pool_id,
                on_jobs=self.nudge,
                on_breaking_migration=self._breaking_migration,
                on_reconnected=lambda: self.nudge(options.concurrency),
                is_shutting_down=lambda: self.shutting_down,
                notifier=notifier,
                poll_interval=options.poll_interval,
                suggest_pooler=options.pooler is None,
            )
        self._sweeper: ResetLockedSweeper | None = None
        if continuous:
            self._sweeper = ResetLockedSweeper(
                store=store,
                events=events,
                min_interval=options.min_reset_locked_interval,
                max_interval=options.max_reset_locked_interval,
                use_local_time=options.use_local_time,
            )
        self.active = True
        self.shutting_down = False
        self._forcing = False
        self._forced = asyncio.Event()
        self._stopping = asyncio.Event()
        self._deactivation: asyncio.Future[list[Exception]] | None = None
        self._graceful: asyncio.Task[None] | None = None
        self._forceful: asyncio.Task[None] | None = None
        self._terminated = False
        self._abort_timer: asyncio.TimerHandle | None = None

    # -- load ------------------------------------------------------------------------

    @property
    def busy_slots(self) -> int:
        """Slots holding a job (running it, or recording its outcome)."""
        return sum(1 for slot in list(self._slots) if slot.job is not None)

    @property
    def local_queue_length(self) -> int:
        """Jobs fetched into the local queue that no slot has taken yet (0 without one)."""
        return self._source.cached if isinstance(self._source, LocalQueue) else 0

    # -- life ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the slots, the LISTEN connection and the sweep."""
        self._emit("pool:create")
        if self._listener is not None:
            self._listener.start()
        if self._sweeper is not None:
            self._sweeper.start()
        for _ in range(self._options.concurrency):
            slot = Slot(
                pool_id=self.id,
                continuous=self.continuous,
                poll_interval=self._options.poll_interval,
                source=self._source,
                releaser=self._releaser,
                runner=self._runner,
                events=self._events,
                forbidden_flags=(
                    None if self._options.forbidden_flags is None else self._forbidden_flags
                ),
                health=self._health,
                chain=self._chain,
            )
            self._events.emit(
                SlotEvent(name="worker:create", pool_id=self.id, worker_id=slot.slot_id)
            )
            task = asyncio.create_task(slot.run(), name=slot.slot_id)
            self._slots[slot] = task
            self._live.add(slot)
            task.add_done_callback(lambda _task, slot=slot: self._slot_exited(slot))  # type: ignore[misc]

    async def wait_closed(self) -> None:
        """Wait until a shutdown has begun and every shutdown in progress has finished."""
        await self._stopping.wait()
        while True:
            phases = [t for t in (self._graceful, self._forceful) if t is not None]
            await asyncio.wait(phases)
            if all(t.done() for t in (self._graceful, self._forceful) if t is not None):
                break
        # A sync task abandoned by a forceful shutdown keeps its thread until it returns.
        self._executor.shutdown(wait=False, cancel_futures=True)

    def nudge(self, count: int) -> None:
        """Wake up to ``count`` idle slots (after the job source had its say)."""
        if not self.active:
            return
        remaining = self._source.pulse(count)
        for slot in list(self._live):
            if remaining <= 0:
                break
            if slot.nudge():
                remaining -= 1

    def graceful_shutdown(self, message: str) -> asyncio.Task[None]:
        """Begin (or join) a graceful shutdown."""
        if self._forceful is not None:
            return self._forceful
        if self._graceful is None:
            self.shutting_down = True
            self._graceful = asyncio.create_task(self._graceful_shutdown(message))
            self._stopping.set()
        return self._graceful

    def forceful_shutdown(self, message: str) -> asyncio.Task[None]:
        """Begin (or join) a forceful shutdown."""
        if self._forceful is None:
            self.shutting_down = True
            self._forcing = True
            self._forced.set()
            self._forceful = asyncio.create_task(self._forceful_shutdown(message))
            self._stopping.set()
        return self._forceful

    # -- callbacks -------------------------------------------------------------------

    async def _forbidden_flags(self) -> list[str] | None:
        return await resolve_forbidden_flags(self._options.forbidden_flags)

    def _breaking_migration(self, number: int | None) -> None:
        logger.warning(
            "a breaking migration (revision %s) was applied to the database schema; this "
            "worker cannot safely continue and shuts down (exit code %d)",
            number,
            EXIT_SCHEMA_TOO_NEW,
        )
        self.exit_code = EXIT_SCHEMA_TOO_NEW
        self.graceful_shutdown(f"breaking migration {number} applied to the schema")

    def _major_error(self, error: Exception) -> None:
        """Jobs of the local queue could not be given back: stop."""
        if not self.shutting_down:
            self.errors.append(error)
            self.graceful_shutdown("could not give unstarted jobs back to the database")

    def _batch_failed(self, action: str, error: Exception) -> None:
        """A batch of outcomes could not be written: the queue is inconsistent, stop."""
        self._events.emit(
            PoolErrorEvent(name="pool:fatalError", pool_id=self.id, error=error, action=action)
        )
        if error not in self.errors:
            self.errors.append(error)
        if not self.shutting_down:
            what = "completions" if action == "completeJob" else "failures"
            self.graceful_shutdown(f"could not record job {what}; the queue may be inconsistent")

    def _slot_exited(self, slot: Slot) -> None:
        self._live.discard(slot)
        task = self._slots[slot]
        raised = None if task.cancelled() else task.exception()
        error = raised if isinstance(raised, Exception) else None
        if error is not None:
            logger.error("worker slot %s stopped with an error: %s", slot.slot_id, error)
        if self.shutting_down:
            return
        if self.continuous and self.active:
            self.errors.append(
                error or RuntimeError(f"worker slot {slot.slot_id} stopped unexpectedly")
            )
            self.graceful_shutdown("a worker slot stopped unexpectedly")
        elif error is not None:
            self.errors.append(error)
        if not self._live:
            self.graceful_shutdown(
                "no runnable jobs are left" if not self.continuous else "no worker slots left"
            )

    # -- shutdown --------------------------------------------------------------------

    def _deactivate(self) -> asyncio.Future[list[Exception]]:
        """Stop fetching and sweeping (once); resolves to the errors met meanwhile."""
        if self._deactivation is None:
            self.active = False
            for slot in self._slots:
                slot.release()
            self._deactivation = asyncio.ensure_future(self._release_fetching())
        return self._deactivation

    async def _release_fetching(self) -> list[Exception]:
        errors: list[Exception] = []
        for release in (
            self._source.release,
            self._listener.stop if self._listener is not None else None,
            self._sweeper.stop if self._sweeper is not None else None,
        ):
            if release is None:
                continue
            try:
                await release()
            except Exception as error:
                logger.error("stopping the worker's fetching or sweeping failed: %s", error)
                errors.append(error)
        return errors

    async def _graceful_shutdown(self, message: str) -> None:
        self._emit("pool:gracefulShutdown", message=message)
        loop = asyncio.get_running_loop()
        self._abort_timer = loop.call_later(
            self._options.graceful_shutdown_abort_timeout, self.abort_signal.set
        )
        try:
            errors = list(await asyncio.shield(self._deactivate()))
            if self._slots:
                await self._slots_stopped_or_forced()
            held = self._held_jobs()
            if held and not self._forcing:
                try:
                    await fail_jobs_with_message(self._store, held, message)
                except Exception as error:
                    errors.append(error)
            if self._forcing:
                errors.append(RuntimeError("a forceful shutdown began during the graceful one"))
            else:
                errors.extend(await self._terminate())
            if errors:
                raise _combine(errors, "errors during graceful shutdown")
            self._emit("pool:gracefulShutdown:complete")
        except Exception as error:
            self._events.emit(
                PoolErrorEvent(name="pool:gracefulShutdown:error", pool_id=self.id, error=error)
            )
            if not self._forcing:
                logger.error("graceful shutdown failed (%s); shutting down forcefully", error)
                self.errors.append(error)
            await self.forceful_shutdown(describe_error(error))
        finally:
            self._abort_timer.cancel()

    async def _slots_stopped_or_forced(self) -> None:
        """Wait until every slot has stopped, or until a forceful shutdown takes over (it
        deals with the slots still running, even those whose task ignores cancellation)."""
        slots = asyncio.ensure_future(asyncio.wait(self._slots.values()))
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            await asyncio.wait({slots, forced}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            slots.cancel()
            forced.cancel()

    async def _forceful_shutdown(self, message: str) -> None:
        self._emit("pool:forcefulShutdown", message=message)
        self.abort_signal.set()
        errors: list[Exception] = []
        try:
            deactivation = self._deactivate()
            try:
                async with asyncio.timeout(FORCEFUL_STEP_TIMEOUT):
                    errors.extend(await asyncio.shield(deactivation))
            except TimeoutError as error:
                errors.append(error)
            running = [s for s in self._slots if s.job is not None and s.running]
            for slot in running:
                slot.abandoned = True
                self._slots[slot].cancel()
            jobs = [s.job.id for s in running if s.job is not None]
            jobs += self._held_jobs()
            if jobs:
                try:
                    failed = await fail_jobs_with_message(self._store, jobs, message)
                    logger.warning("failed %d running job(s): %s", len(failed), message)
                except Exception as error:
                    errors.append(error)
            pending = [t for t in self._slots.values() if not t.done()]
            if pending:
                _done, late = await asyncio.wait(pending, timeout=FORCEFUL_STEP_TIMEOUT)
                for task in late:
                    task.cancel()
                if late:
                    # Task code that ignores cancellation is abandoned: its job is failed
                    # and unlocked already, and its slot writes nothing when it returns.
                    logger.warning(
                        "%d worker slot(s) did not stop within %g s (task code that ignores "
                        "cancellation); abandoned",
                        len(late),
                        FORCEFUL_STEP_TIMEOUT,
                    )
            errors.extend(await self._terminate())
            if errors:
                raise _combine(errors, "errors during forceful shutdown")
            self._emit("pool:forcefulShutdown:complete")
        except Exception as error:
            self._events.emit(
                PoolErrorEvent(name="pool:forcefulShutdown:error", pool_id=self.id, error=error)
            )
            logger.error("forceful shutdown failed: %s", error)
            self.errors.append(error)

    def _held_jobs(self) -> list[int]:
        """Ids of jobs still held by slots that stopped because writing an outcome failed."""
        return [
            slot.job.id
            for slot, task in self._slots.items()
            if slot.job is not None
            and not slot.abandoned
            and task.done()
            and not task.cancelled()
            and task.exception() is not None
        ]

    async def _terminate(self) -> list[Exception]:
        """Write what the releaser still holds (once)."""
        if self._terminated:
            return []
        self._terminated = True
        try:
            await self._releaser.release()
        except Exception as error:
            logger.error("writing the last job outcomes failed: %s", error)
            return [error]
        return []

    def _emit(self, name: str, *, message: str | None = None) -> None:
        self._events.emit(PoolEvent(name=name, pool_id=self.id, message=message))


def _combine(errors: list[Exception], message: str) -> Exception:
    return errors[0] if len(errors) == 1 else ExceptionGroup(message, errors)


def _chain(releaser: DirectReleaser, source: DirectJobSource) -> Chain:
    def chain(
        job: FetchedJob, failure: Failure | None, flags: Sequence[str] | None
    ) -> Awaitable[tuple[Written, FetchedJob | None]]:
        return releaser.release_and_fetch(job, failure, source, flags)

    return chain
