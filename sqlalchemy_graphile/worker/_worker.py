""":class:`Worker`: the public face of the worker engine."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import asyncpg

from ..cron._items import CronItem
from ..cron._scheduler import CronScheduler
from ..errors import ConfigurationError
from ..events import PoolEvent, SignalEvent, WorkerEvents
from ..job import Job
from ..job_spec import JobSpec, RawJobSpec
from ..tasks import AnyTaskType, BatchTask, Task
from . import _signals
from ._connect import Database, resolve_database
from ._options import ForbiddenFlags, RefetchDelay, WorkerOptions, build_options
from ._pool import FORCEFUL_STEP_TIMEOUT, WorkerPool
from ._schema_check import check_schema
from ._sql import statements_for

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ..prometheus import WorkerMetrics
    from ..prometheus._endpoint import MetricsEndpoint
    from ..utils import WorkerUtils

logger = logging.getLogger("sqlalchemy_graphile.worker")


def new_pool_id(*, continuous: bool) -> str:
    """A fresh lock owner id: ``sgpool-`` (or ``sgotpool-`` for run-once) + 18 hex digits."""
    return f"{'sgpool' if continuous else 'sgotpool'}-{secrets.token_hex(9)}"


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no transactions, settings or LISTEN), so
    they need no reset round trip when released."""


class Worker:
    """Runs jobs of the given task types, with Graphile Worker's semantics.

    ::

        worker = Worker("postgresql://app@db/app", tasks=[SendEmail], concurrency=10)
        await worker.run()        # until SIGINT/SIGTERM or `await worker.stop()`
        await worker.run_once()   # every job runnable now, then return

        async with Worker(url, tasks=[SendEmail]) as worker:   # runs in the background
            ...

    ``database`` is a URL (``str`` or :class:`sqlalchemy.engine.URL`; a plain
    ``postgresql://`` URL works) or an :class:`AsyncEngine` whose URL and ``connect_args``
    are reused (the engine itself is never disposed by the worker); ``None`` means
    ``$DATABASE_URL``. The worker runs jobs on its own asyncpg pool and a dedicated LISTEN
    connection; add ``?application_name=...`` to name them (default ``sg-worker`` and
    ``sg-worker-listen``).

    Options (Graphile Worker's, in snake_case; every time is in **seconds**):

    * ``tasks``: the :class:`Task` / :class:`BatchTask` classes to run (any iterable); two
      with one identifier are a :class:`ConfigurationError`.
    * ``concurrency`` (1): jobs run at once. Async tasks run on the event loop, sync tasks
      in a thread pool of this size.
    * ``schema``: default ``$GRAPHILE_WORKER_SCHEMA`` or ``graphile_worker``.
    * ``poll_interval`` (2.0): how often an idle slot looks for jobs; new jobs announced by
      ``NOTIFY`` are picked up at once.
    * ``extensions``: objects tasks reach with ``ctx.get_ext(Type)``.
    * ``forbidden_flags``: ``None``, a list of flags, or a function (sync or async)
      returning ``None`` or a list, called before every fetch; jobs carrying any of the
      flags are skipped.
    * ``listen`` (True): ``False`` for poolers that cannot ``LISTEN`` (polling only).
    * ``use_local_time`` (False): decide which jobs are due by this machine's clock.
    * ``graceful_shutdown_abort_timeout`` (5.0): after a graceful shutdown begins, wait
      this long, then set ``ctx.abort_signal``.
    * ``handle_signals`` (True): on the main thread, SIGINT, SIGTERM, SIGHUP and SIGUSR2
      shut the worker down gracefully; a second signal fails running jobs and stops.
    * ``max_pool_size``: connections for jobs (default ``max(10, concurrency)``).
    * ``min_reset_locked_interval`` / ``max_reset_locked_interval`` (480 / 600): the
      bounds of the interval between sweeps of locks older than four hours.
    * ``prepared_statements`` (True): ``False`` for poolers in transaction mode.
    * ``crontab``: recurring jobs, as crontab text (see :func:`parse_crontab`) or a list
      of :class:`CronItem`; scheduled by ``run()`` on this machine's clock, not by
      ``run_once()``. A bad line or item raises :class:`CrontabError`.
    * ``local_queue_size`` (``None`` or -1: off): fetch this many jobs at once into a local
      queue that feeds the slots, instead of one fetch per job. Unstarted jobs are given
      back (their attempt refunded) after ``local_queue_ttl`` (300) seconds and on
      shutdown. A batch takes at most one job per named queue, so queues stay serial.
    * ``local_queue_refetch_delay``: seconds, or a :class:`RefetchDelay`; after a fetch
      that found (almost) nothing, wait this long before fetching again. At most
      ``poll_interval``.
    * ``complete_job_batch_delay`` / ``fail_job_batch_delay`` (``None`` or -1: off): gather
      completions / failures for this many seconds (0: until the event loop's next turn)
      and write each batch with one statement. A batch that cannot be written stops the
      worker (``pool:fatalError``); its jobs stay locked until the stale-lock sweep.
    * ``events``: a :class:`WorkerEvents` to report to (default: a new one, on
      :attr:`events`).
    * ``metrics``: a :class:`sqlalchemy_graphile.prometheus.WorkerMetrics` to count this
      worker's jobs in (the ``prometheus`` extra); ``None`` (default): no counting at all.
    * ``metrics_port``: serve Prometheus metrics on ``http://0.0.0.0:PORT/metrics`` while
      running (0: any free port, see :attr:`metrics_port`): the worker's (in ``metrics``, or
      a new :class:`WorkerMetrics` with the process's own metrics), and, unless
      ``queue_metrics=False``, the queue-level gauges read at each scrape.

    Bad options raise :class:`ConfigurationError` (:class:`InvalidTaskError`,
    :class:`InvalidIdentifierError` for a bad task class or schema name) here, before any
    connection is made.
    """

    def __init__(
        self,
        database: str | URL | AsyncEngine | None = None,
        *,
        tasks: Iterable[AnyTaskType],
        concurrency: int = 1,
        schema: str | None = None,
        poll_interval: float = 2.0,
        extensions: Iterable[object] = (),
        forbidden_flags: ForbiddenFlags = None,
        listen: bool = True,
        use_local_time: bool = False,
        graceful_shutdown_abort_timeout: float = 5.0,
        handle_signals: bool = True,
        max_pool_size: int | None = None,
        min_reset_locked_interval: float = 480.0,
        max_reset_locked_interval: float = 600.0,
        prepared_statements: bool = True,
        crontab: str | Iterable[CronItem] | None = None,
        local_queue_size: int | None = None,
        local_queue_ttl: float = 300.0,
        local_queue_refetch_delay: RefetchDelay | float | None = None,
        complete_job_batch_delay: float | None = None,
        fail_job_batch_delay: float | None = None,
        events: WorkerEvents | None = None,
        metrics: WorkerMetrics | None = None,
        metrics_port: int | None = None,
        queue_metrics: bool = True,
    ) -> None:
        self._options: WorkerOptions = build_options(
            tasks=tasks,
            concurrency=concurrency,
            schema=schema,
            poll_interval=poll_interval,
            extensions=extensions,
            forbidden_flags=forbidden_flags,
            listen=listen,
            use_local_time=use_local_time,
            graceful_shutdown_abort_timeout=graceful_shutdown_abort_timeout,
            handle_signals=handle_signals,
            max_pool_size=max_pool_size,
            min_reset_locked_interval=min_reset_locked_interval,
            max_reset_locked_interval=max_reset_locked_interval,
            prepared_statements=prepared_statements,
            crontab=crontab,
            local_queue_size=local_queue_size,
            local_queue_ttl=local_queue_ttl,
            local_queue_refetch_delay=local_queue_refetch_delay,
            complete_job_batch_delay=complete_job_batch_delay,
            fail_job_batch_delay=fail_job_batch_delay,
            metrics_port=metrics_port,
            queue_metrics=queue_metrics,
        )
        if events is not None and not isinstance(events, WorkerEvents):
            raise ConfigurationError(f"events must be a WorkerEvents, not {type(events).__name__}")
        self._database: Database = resolve_database(database)
        if self._options.max_pool_size < self._options.concurrency:
            logger.warning(
                "max_pool_size (%d) is below concurrency (%d): jobs will wait for connections",
                self._options.max_pool_size,
                self._options.concurrency,
            )
        queue_size = self._options.local_queue_size
        if queue_size is not None and queue_size < self._options.concurrency:
            logger.warning(
                "local_queue_size (%d) is below concurrency (%d): some slots will wait",
                queue_size,
                self._options.concurrency,
            )
        self._events = events if events is not None else WorkerEvents()
        self._metrics, self._metrics_endpoint = _prometheus(metrics, self._options)
        if self._metrics is not None:
            self._metrics.attach(self)
        self._worker_id = new_pool_id(continuous=True)
        self._engine: AsyncEngine | None = None
        self._utils: WorkerUtils | None = None
        self._pool: WorkerPool | None = None
        self._cron: CronScheduler | None = None
        self._running = False
        self._stop_requested: bool | None = None  # None, or whether to force
        self._started = asyncio.Event()
        self._finished = asyncio.Event()
        self._background: asyncio.Task[None] | None = None
        self._exit_code = 0

    # -- properties ------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        """The lock owner id (``locked_by``) of the current run, or of the next continuous
        run. Each ``run_once()`` uses a fresh ``sgotpool-`` id."""
        return self._worker_id

    @property
    def events(self) -> WorkerEvents:
        """Subscribe here to the worker's events."""
        return self._events

    @property
    def options(self) -> WorkerOptions:
        """The validated options."""
        return self._options

    @property
    def running(self) -> bool:
        """Whether ``run()`` or ``run_once()`` is in progress."""
        return self._running

    @property
    def busy_slots(self) -> int:
        """Slots holding a job now (running it or recording its outcome); 0 when not
        running. Cheap enough to read at any time, from any thread."""
        pool = self._pool
        return pool.busy_slots if pool is not None else 0

    @property
    def local_queue_length(self) -> int:
        """Jobs fetched into the local queue that no slot has taken yet (0 without one)."""
        pool = self._pool
        return pool.local_queue_length if pool is not None else 0

    @property
    def metrics_port(self) -> int | None:
        """The port ``/metrics`` is served on while running (the one picked for
        ``metrics_port=0``); else the ``metrics_port`` option."""
        endpoint = self._metrics_endpoint
        served = endpoint.port if endpoint is not None else None
        return served if served is not None else self._options.metrics_port

    @property
    def exit_code(self) -> int:
        """0, or 57 when the last run stopped because a breaking migration was applied to
        the schema while it ran (the command line exits with it)."""
        return self._exit_code

    @property
    def utils(self) -> WorkerUtils:
        """A :class:`WorkerUtils` on the worker's database and schema. Its engine (made from
        the URL, unless you gave one) is disposed when ``run()`` / ``run_once()`` return."""
        if self._utils is None:
            # Imported on first use: a worker whose tasks add no jobs never needs it.
            from ..utils import WorkerUtils

            self._engine = self._database.make_engine()
            self._utils = WorkerUtils(self._engine, schema=self._options.schema)
        return self._utils

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a termination signal or :meth:`stop`, then shut down gracefully.

        Checks the schema first: :class:`SchemaNotInstalledError` (install it with
        ``alembic upgrade head``), :class:`SchemaTooOldError`, :class:`SchemaTooNewError`.
        Database outages while running are waited out. Raises the error that ended the run
        if it was not a requested stop (for example an outcome that could not be written).
        """
        await self._run(continuous=True)

    async def run_once(self) -> None:
        """Run every job that is runnable now (with ``concurrency`` slots, no LISTEN, no
        lock sweep), then return. Raises a fetch error instead of waiting it out."""
        await self._run(continuous=False)

    async def stop(self, *, force: bool = False) -> None:
        """Stop a running worker and wait until it has stopped; a no-op if it is not running.

        Graceful by default: no new jobs, running jobs finish. ``force=True`` (or a second
        call with it) fails the jobs still running with a shutdown message (the attempt
        counts; they are retried after the usual backoff) and returns promptly. Do not await
        this from inside one of the worker's own tasks.
        """
        if not self._running:
            return
        self._events.emit(PoolEvent(name="stop", pool_id=self._worker_id))
        if self._cron is not None:
            self._cron.release()
        pool = self._pool
        if pool is None:
            self._stop_requested = force or bool(self._stop_requested)
        elif force:
            pool.forceful_shutdown("the worker was stopped forcefully while the job ran")
        else:
            pool.graceful_shutdown("the worker was stopped")
        await self._finished.wait()

    async def __aenter__(self) -> Self:
        self._new_run_events()
        self._background = asyncio.create_task(
            self._run(continuous=True, events_ready=True), name=f"{self._worker_id} run"
        )
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._background, started}, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._background.done():
            await self._background
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._background is not None:
            background, self._background = self._background, None
            await background

    def _new_run_events(self) -> None:
        # Made per run, so that a worker can run again on another event loop.
        self._started = asyncio.Event()
        self._finished = asyncio.Event()

    async def _run(self, *, continuous: bool, events_ready: bool = False) -> None:
        if self._running:
            raise RuntimeError("this worker is already running")
        self._running = True
        if not events_ready:
            self._new_run_events()
        self._stop_requested = None
        if not continuous:
            self._worker_id = new_pool_id(continuous=False)
            if self._options.crontab:
                logger.info("run_once() does not schedule cron items; run() does")
        pool: WorkerPool | None = None
        try:
            pool = await self._serve(continuous)
        finally:
            if self._engine is not None and self._database.engine is None:
                await self._engine.dispose()
            await self._events.drain(self._options.graceful_shutdown_abort_timeout)
            self._running = False
            self._pool = None
            self._worker_id = new_pool_id(continuous=True)
            self._finished.set()
        if pool is not None:
            self._exit_code = pool.exit_code
            if pool.errors:
                errors = pool.errors
                raise errors[0] if len(errors) == 1 else ExceptionGroup("worker failed", errors)

    async def _serve(self, continuous: bool) -> WorkerPool:
        options = self._options
        database = self._database
        db: asyncpg.Pool = await asyncpg.create_pool(
            min_size=1,
            max_size=options.max_pool_size,
            reset=_keep_session,
            **database.asyncpg_kwargs(
                application_name=database.application_name,
                prepared_statements=options.prepared_statements,
            ),
        )
        endpoint = self._metrics_endpoint
        try:
            await check_schema(db, options.schema)
            if endpoint is not None:
                endpoint.start(db)
        except BaseException:
            await _close(db)
            raise
        listen_kwargs = database.asyncpg_kwargs(
            application_name=database.listen_application_name,
            prepared_statements=options.prepared_statements,
        )
        pool = WorkerPool(
            options=options,
            pool_id=self._worker_id,
            continuous=continuous,
            db=db,
            statements=statements_for(options.schema),
            events=self._events,
            adder=_UtilsAdder(self),
            connect_listener=lambda: asyncpg.connect(**listen_kwargs),
            observer=self._metrics,
        )
        self._pool = pool
        if continuous and options.crontab:
            self._cron = CronScheduler(
                pool=db,
                schema=options.schema,
                items=options.crontab,
                events=self._events,
                pool_id=pool.id,
            )
        unregister = _signals.register(self._on_signal) if options.handle_signals else None
        try:
            pool.start()
            if self._cron is not None:
                self._cron.start()
            self._started.set()
            if self._stop_requested is not None:
                if self._stop_requested:
                    pool.forceful_shutdown("the worker was stopped forcefully while starting")
                else:
                    pool.graceful_shutdown("the worker was stopped while starting")
            try:
                await pool.wait_closed()
            except asyncio.CancelledError:
                pool.forceful_shutdown("the worker's task was cancelled while the job ran")
                await pool.wait_closed()
                raise
        finally:
            if unregister is not None:
                unregister()
            if self._cron is not None:
                await self._cron.stop()
                self._cron = None
            if endpoint is not None:
                await endpoint.stop()
            await _close(db)
            self._events.emit(PoolEvent(name="pool:release", pool_id=pool.id))
        return pool

    def _on_signal(self, name: str, forceful: bool) -> None:
        pool = self._pool
        if pool is None:
            return
        if self._cron is not None:
            self._cron.release()
        event = "forcefulShutdown" if forceful else "gracefulShutdown"
        self._events.emit(SignalEvent(name=event, pool_id=pool.id, signal=name))
        if forceful:
            pool.forceful_shutdown(f"the worker was stopped forcefully by {name} while the job ran")
        else:
            pool.graceful_shutdown(f"the worker received {name}")


class _UtilsAdder:
    """The :class:`JobAdder` of the worker's tasks: :attr:`Worker.utils`, made on first use."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        return await self._worker.utils.add_job(task, spec)

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]:
        return await self._worker.utils.add_jobs(jobs)

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        return await self._worker.utils.add_raw_job(identifier, payload, spec)

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]:
        return await self._worker.utils.add_raw_jobs(jobs)

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        return await self._worker.utils.add_batch_job(items, spec)


def _prometheus(
    metrics: WorkerMetrics | None, options: WorkerOptions
) -> tuple[WorkerMetrics | None, MetricsEndpoint | None]:
    """The worker's metrics and ``/metrics`` endpoint, if asked for. The ``prometheus``
    extra is imported only then; without it, :class:`ConfigurationError`."""
    if metrics is None and options.metrics_port is None:
        return None, None
    try:
        from .. import prometheus
        from ..prometheus._endpoint import MetricsEndpoint
    except ImportError:
        raise ConfigurationError(
            "metrics need the prometheus extra: pip install 'sqlalchemy-graphile[prometheus]'"
        ) from None
    if metrics is None:
        metrics = prometheus.WorkerMetrics(registry=prometheus.process_registry())
    elif not isinstance(metrics, prometheus.WorkerMetrics):
        raise ConfigurationError(f"metrics must be a WorkerMetrics, not {type(metrics).__name__}")
    if options.metrics_port is None:
        return metrics, None
    endpoint = MetricsEndpoint(
        metrics,
        port=options.metrics_port,
        schema=options.schema,
        queue_metrics=options.queue_metrics,
    )
    return metrics, endpoint


async def _close(db: asyncpg.Pool) -> None:
    try:
        async with asyncio.timeout(FORCEFUL_STEP_TIMEOUT):
            await db.close()
    except Exception as error:
        logger.warning("closing the worker's connections failed (%s); terminating them", error)
        db.terminate()
