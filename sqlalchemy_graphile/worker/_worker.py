""":class:`Worker`: the public face of the worker engine."""

from __future__ import annotations

import asyncio
import logging
import secrets
import textwrap
import warnings
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import asyncpg

from .._catalog import catalog_for
from .._plugins import Plugins
from .._poolers import Pooler
from .._recovery import DEFAULT_RESILIENT_FLAGS, heartbeat_metadata
from .._store._adder import StoreAdder
from .._store._asyncpg import AsyncpgJobStore
from .._store._asyncpg_cron import AsyncpgCronStore
from .._store._asyncpg_recovery import AsyncpgRecoveryStore
from .._store._recovery import RecoveryStore
from ..cron import CronItem, CronScheduler
from ..errors import ConfigurationError, WorkerStateError
from ..events import PoolEvent, SignalEvent, WorkerEvents
from ..hooks import WorkerPlugin
from ..tasks import AnyTaskType
from . import _signals
from ._connect import Database, connection_failure, resolve_database
from ._log_output import show_logs_unless_configured
from ._options import (
    DEFAULT_UNHANDLED_INTERVAL,
    ForbiddenFlags,
    RefetchDelay,
    WorkerOptions,
    describe_options,
    option_fields,
)
from ._pool import FORCEFUL_STEP_TIMEOUT, WorkerPool
from ._recovery import PROCESS_STARTED_AT, Heartbeat, RecoverySweeper
from ._schema_check import check_schema
from ._unhandled import UnhandledJobsCheck

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ..prometheus import WorkerMetrics
    from ..prometheus._endpoint import MetricsEndpoint
    from ..utils import WorkerUtils

logger = logging.getLogger("sqlalchemy_graphile.worker")

_OPTION_NAMES = frozenset(option_fields())


def new_pool_id(*, continuous: bool) -> str:
    """A fresh lock owner id: ``sgpool-`` (or ``sgotpool-`` for run-once) + 18 hex digits."""
    return f"{'sgpool' if continuous else 'sgotpool'}-{secrets.token_hex(9)}"


#: What the driver raises when the database cannot be reached or used at start (refused,
#: unknown host, timeout, authentication, unknown database, permissions, ...).
_START_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


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
    ``postgresql://`` URL works, and a ``+driver`` is dropped) or an :class:`AsyncEngine`
    whose URL is reused (not its ``connect_args``; the engine itself serves
    :attr:`utils` and is never disposed by the worker); ``None`` means ``$DATABASE_URL``.
    asyncpg reads the URL as libpq reads a connection URI (several hosts, ``sslmode``, ...;
    see docs/running-workers.md). The worker runs jobs on its own asyncpg pool and a
    dedicated LISTEN connection (to ``listen_url`` when given); add
    ``?application_name=...`` to name them (default ``sg-worker`` and ``sg-worker-listen``).
    Behind a pooler in transaction mode, give ``pooler="transaction"`` (see
    docs/poolers.md).

    Bad options raise :class:`ConfigurationError` naming each (:class:`InvalidTaskError`,
    :class:`InvalidIdentifierError`, :class:`CrontabError` for a bad task class, schema name
    or crontab) here, before any connection is made.

    ``events`` is a :class:`WorkerEvents` to report to (default: a new one, on
    :attr:`events`). The other options (Graphile Worker's, in snake_case; every time is in
    **seconds**) are declared, with their types, bounds and documentation, on
    :class:`WorkerOptions`; this list is generated from there:
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
        plugins: Iterable[WorkerPlugin] = (),
        forbidden_flags: ForbiddenFlags = None,
        listen: bool = True,
        listen_url: str | None = None,
        use_local_time: bool = False,
        graceful_shutdown_abort_timeout: float = 5.0,
        handle_signals: bool = True,
        max_pool_size: int | None = None,
        min_reset_locked_interval: float = 480.0,
        max_reset_locked_interval: float = 600.0,
        prepared_statements: bool = True,
        pooler: Pooler | None = None,
        crontab: str | Iterable[CronItem] | None = None,
        local_queue_size: int | None = None,
        local_queue_ttl: float = 300.0,
        local_queue_refetch_delay: RefetchDelay | float | None = None,
        complete_job_batch_delay: float | None = None,
        fail_job_batch_delay: float | None = None,
        asynchronous_release_commit: bool = False,
        metrics: WorkerMetrics | None = None,
        metrics_port: int | None = None,
        queue_metrics: bool = True,
        unhandled_jobs_interval: float | None = DEFAULT_UNHANDLED_INTERVAL,
        handled_elsewhere: Iterable[str] | None = None,
        heartbeat_interval: float | None = 30.0,
        sweep_interval: float | None = 60.0,
        sweep_threshold: float = 300.0,
        recovery_delay: float = 0.0,
        resilient_flags: Iterable[str] = DEFAULT_RESILIENT_FLAGS,
        resilient_threshold_multiplier: float = 3.0,
        recover_unregistered_locks: bool = False,
        events: WorkerEvents | None = None,
    ) -> None:
        # Every keyword but database and events is a field of WorkerOptions, under the same
        # name and with the same default (tests/unit/test_worker_options.py checks), so the
        # keywords are passed on by name. Nothing may be assigned before this line.
        arguments = locals()
        self._options = WorkerOptions.build(**{name: arguments[name] for name in _OPTION_NAMES})
        if events is not None and not isinstance(events, WorkerEvents):
            raise ConfigurationError(f"events must be a WorkerEvents, not {type(events).__name__}")
        self._database: Database = resolve_database(database)
        listen_url = self._options.listen_url
        self._listen_database = (
            self._database if listen_url is None else resolve_database(listen_url)
        )
        if self._options.max_connections < self._options.concurrency:
            logger.warning(
                "max_pool_size (%d) is below concurrency (%d): jobs will wait for connections",
                self._options.max_connections,
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
        self._plugins = Plugins(self._options.plugins, events=self._events)
        self._metrics, self._metrics_endpoint = _prometheus(self._options)
        if self._metrics is not None:
            self._metrics.attach(self)
        self._pool_id = new_pool_id(continuous=True)
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
    def pool_id(self) -> str:
        """The lock owner id (``locked_by``) of the current run, or of the next continuous
        run. Each ``run_once()`` uses a fresh ``sgotpool-`` id. Tasks see it as
        ``ctx.worker_id``; ``WorkerUtils.force_unlock_workers()`` takes it."""
        return self._pool_id

    @property
    def worker_id(self) -> str:
        """Deprecated: use :attr:`pool_id` (the same id; "worker" also names a slot in
        Graphile Worker's events)."""
        warnings.warn(
            "Worker.worker_id is deprecated; use Worker.pool_id", DeprecationWarning, stacklevel=2
        )
        return self._pool_id

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
        """A :class:`WorkerUtils` on the worker's database and schema, with the worker's
        plugins, for your own use: the worker itself never makes it (its tasks add jobs on
        its own pool). Its engine (made from the URL, unless you gave one) is disposed when
        ``run()`` / ``run_once()`` return."""
        if self._utils is None:
            # Imported on first use: SQLAlchemy is loaded only if this is asked for.
            from ..utils import WorkerUtils

            self._engine = self._database.make_engine(self._options.pooler)
            self._utils = WorkerUtils(
                self._engine, schema=self._options.schema, plugins=self._plugins
            )
        return self._utils

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until a termination signal or :meth:`stop`, then shut down gracefully.

        Connects and checks the schema first: :class:`DatabaseConnectionError` (naming the
        host, port, database and schema) if the database cannot be reached or used,
        :class:`SchemaNotInstalledError` (install it with ``sqlalchemy-graphile migrate``),
        :class:`SchemaTooOldError`, :class:`SchemaTooNewError`; :class:`WorkerStateError` if
        the worker is running already. Database outages while running are waited out.
        Raises the error that ended the run if it was not a requested stop (for example an
        outcome that could not be written).
        """
        await self._run(continuous=True)

    async def run_once(self) -> None:
        """Run every job that is runnable now (with ``concurrency`` slots, no LISTEN, no
        lock sweep), then return. Starts as :meth:`run` does (with the same errors); raises
        a fetch error instead of waiting it out."""
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
        self._events.emit(PoolEvent(name="stop", pool_id=self._pool_id))
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
            self._run(continuous=True, events_ready=True), name=f"{self._pool_id} run"
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
            raise WorkerStateError(
                "this worker is already running; stop() it first, or make another Worker"
            )
        self._running = True
        if not events_ready:
            self._new_run_events()
        self._stop_requested = None
        if not continuous:
            self._pool_id = new_pool_id(continuous=False)
            if self._options.crontab:
                logger.info("run_once() does not schedule cron items; run() does")
        self._plugins.pool_id = self._pool_id
        pool: WorkerPool | None = None
        hide_logs = show_logs_unless_configured()
        try:
            pool = await self._serve(continuous)
        finally:
            hide_logs()
            if self._engine is not None and self._database.engine is None:
                await self._engine.dispose()
            await self._events.drain(self._options.graceful_shutdown_abort_timeout)
            self._running = False
            self._pool = None
            self._pool_id = new_pool_id(continuous=True)
            self._finished.set()
        if pool is not None:
            self._exit_code = pool.exit_code
            if pool.errors:
                errors = pool.errors
                raise errors[0] if len(errors) == 1 else ExceptionGroup("worker failed", errors)

    async def _serve(self, continuous: bool) -> WorkerPool:
        options = self._options
        database = self._database
        try:
            db: asyncpg.Pool = await asyncpg.create_pool(
                min_size=1,
                max_size=options.max_connections,
                reset=_keep_session,
                **database.asyncpg_kwargs(
                    application_name=database.application_name,
                    prepared_statements=options.prepared_statements and options.pooler is None,
                ),
            )
        except _START_ERRORS as error:
            raise connection_failure(database, options.schema, error) from error
        endpoint = self._metrics_endpoint
        catalog = catalog_for(options.schema)
        recovery_store = AsyncpgRecoveryStore(db, catalog)
        try:
            await check_schema(db, options.schema)
            with_recovery = await _recovery_available(recovery_store, options)
            if endpoint is not None:
                endpoint.start(db)
        except BaseException as error:
            await _close(db)
            if isinstance(error, _START_ERRORS):
                raise connection_failure(database, options.schema, error) from error
            raise
        # The LISTEN connection runs a statement every 30 s: nothing worth preparing.
        listen_kwargs = self._listen_database.asyncpg_kwargs(
            application_name=database.listen_application_name, prepared_statements=False
        )
        store = AsyncpgJobStore(
            db,
            catalog,
            self._pool_id,
            asynchronous_release_commit=options.asynchronous_release_commit,
        )
        pool = WorkerPool(
            options=options,
            continuous=continuous,
            store=store,
            notifier=db,
            events=self._events,
            adder=StoreAdder(store, options.schema, self._plugins),
            connect_listener=lambda: asyncpg.connect(**listen_kwargs),
            observer=self._metrics,
            plugins=self._plugins if self._plugins.runs else None,
        )
        self._pool = pool
        if continuous and options.crontab:
            self._cron = CronScheduler(
                store=AsyncpgCronStore(db, catalog),
                items=options.crontab,
                events=self._events,
                pool_id=pool.id,
            )
        unhandled = None
        if options.unhandled_jobs_interval is not None:
            unhandled = UnhandledJobsCheck(
                pool=db,
                schema=options.schema,
                handled=[*options.tasks, *(options.handled_elsewhere or ())],
                interval=options.unhandled_jobs_interval,
                continuous=continuous,
                pool_id=pool.id,
            )
        heartbeat, sweeper = (
            _recovery_parts(
                recovery_store, options, self._events, pool.id, continuous, self._plugins
            )
            if with_recovery
            else (None, None)
        )
        unregister = _signals.register(self._on_signal) if options.handle_signals else None
        try:
            if heartbeat is not None:
                # Registered before any job is locked, so no lock of ours is ever unregistered.
                await heartbeat.register()
                heartbeat.start()
            if sweeper is not None:
                sweeper.start()
            pool.start()
            if self._cron is not None:
                self._cron.start()
            self._started.set()
            _log_start(pool.id, options, continuous)
            if unhandled is not None:
                unhandled.start()
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
            if sweeper is not None:
                await sweeper.stop()
            if heartbeat is not None:
                # After an unclean stop the row goes stale instead, so that the sweep gives
                # back whatever this pool could not unlock.
                await heartbeat.stop(deregister=not pool.errors)
            if self._cron is not None:
                await self._cron.stop()
                self._cron = None
            if unhandled is not None:
                await unhandled.stop()
            if endpoint is not None:
                await endpoint.stop()
            await _close(db)
            self._events.emit(PoolEvent(name="pool:release", pool_id=pool.id))
            logger.info("worker %s: stopped", pool.id)
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


Worker.__doc__ = f"{Worker.__doc__}\n{textwrap.indent(describe_options(), '    ')}\n"


async def _recovery_available(store: RecoveryStore, options: WorkerOptions) -> bool:
    """Whether heartbeats and sweeps can run on the schema; warns when they are wanted but
    the schema lacks revision 20."""
    if options.heartbeat_interval is None and options.sweep_interval is None:
        return False
    if await store.available():
        return True
    logger.warning(
        "schema %r has no worker registry (revision 20): this worker neither registers nor "
        "sweeps, and the jobs of a worker that dies stay locked for 4 hours. Run "
        "`sqlalchemy-graphile migrate` (Graphile Worker 0.17 keeps running on the result)",
        options.schema,
    )
    return False


def _recovery_parts(
    store: RecoveryStore,
    options: WorkerOptions,
    events: WorkerEvents,
    pool_id: str,
    continuous: bool,
    plugins: Plugins,
) -> tuple[Heartbeat | None, RecoverySweeper | None]:
    """The heartbeat (continuous and run-once pools) and the sweeper (continuous pools),
    as the options ask."""
    heartbeat = None
    if options.heartbeat_interval is not None:
        from .. import __version__

        heartbeat = Heartbeat(
            store=store,
            events=events,
            pool_id=pool_id,
            interval=options.heartbeat_interval,
            metadata=heartbeat_metadata(
                version=__version__,
                concurrency=options.concurrency,
                tasks=sorted(options.tasks),
                process_started_at=PROCESS_STARTED_AT,
            ),
        )
    sweeper = None
    if continuous and options.sweep_interval is not None:
        sweeper = RecoverySweeper(
            store=store,
            events=events,
            pool_id=pool_id,
            interval=options.sweep_interval,
            settings=options.sweep_settings,
            plugins=plugins if plugins.recovers else None,
        )
    return heartbeat, sweeper


def _log_start(pool_id: str, options: WorkerOptions, continuous: bool) -> None:
    logger.info(
        "worker %s: started with %d task type(s) (%s), concurrency %d; %s",
        pool_id,
        len(options.tasks),
        ", ".join(options.tasks),
        options.concurrency,
        "waiting for jobs" if continuous else "running the jobs that are runnable now",
    )


def _prometheus(options: WorkerOptions) -> tuple[WorkerMetrics | None, MetricsEndpoint | None]:
    """The worker's metrics and ``/metrics`` endpoint, if asked for (the ``prometheus``
    extra is imported only then; :attr:`WorkerOptions.metrics_port` checked it is there)."""
    metrics = options.metrics
    if metrics is None and options.metrics_port is None:
        return None, None
    from .. import prometheus
    from ..prometheus._endpoint import MetricsEndpoint

    if metrics is None:
        metrics = prometheus.WorkerMetrics(registry=prometheus.process_registry())
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
