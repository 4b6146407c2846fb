"""Queue-level gauges, read with one query each time Prometheus scrapes."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

from .._catalog import catalog_for
from .._catalog._health import JOB_STATES, HealthStatements
from .._identifiers import resolve_schema
from ..errors import ConfigurationError

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.engine import Engine

logger = logging.getLogger("sqlalchemy_graphile.prometheus")

#: Longest a scrape waits for the query, in seconds (also its ``statement_timeout``).
DEFAULT_TIMEOUT = 5.0

_Rows = Sequence[Sequence[Any]]


class QueueCollector:
    """A ``prometheus_client`` collector of the queue's state, read at scrape time.

    ::

        from prometheus_client import REGISTRY
        from sqlalchemy import create_engine

        REGISTRY.register(QueueCollector(create_engine("postgresql+psycopg://app@db/app")))

    Each scrape runs one read-only statement (one scan of the jobs table, no locks, with a
    ``statement_timeout`` of ``timeout`` seconds) on a connection of ``engine``, a
    synchronous SQLAlchemy :class:`~sqlalchemy.engine.Engine` (``prometheus_client`` calls
    collectors synchronously, even from its ASGI app, so an ``AsyncEngine`` cannot serve).
    It is safe to run from several processes at once; see ``docs/operations.md`` for why
    one scrape target per database is still the recommended setup.

    Metrics (prefix ``namespace``, default ``graphile_worker``), for each task identifier and
    named queue (``queue=""`` outside named queues, and for all jobs when ``by_queue=False``):

    * ``_queue_jobs{task, queue, state}``: jobs that are ``ready`` (due, unlocked, attempts
      left), ``scheduled`` (due later), ``locked`` (being run) or ``failed`` (no attempt left);
    * ``_queue_oldest_ready_seconds{task, queue}``: how long the longest-waiting ready job
      has been due (0 when none is ready);
    * ``_queue_scrape_success`` (1 or 0) and ``_queue_scrape_seconds``: whether and how fast
      the statement ran. When it fails, the error is logged and only these two are shown.

    Raises :class:`InvalidIdentifierError` for a bad schema name and
    :class:`ConfigurationError` for an engine that is not a synchronous SQLAlchemy one.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        schema: str | None = None,
        by_queue: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        namespace: str = "graphile_worker",
    ) -> None:
        from sqlalchemy.engine import Engine

        if not isinstance(engine, Engine):
            raise ConfigurationError(
                "QueueCollector needs a synchronous SQLAlchemy Engine (create_engine(...)), "
                f"not {type(engine).__name__}: Prometheus collects synchronously"
            )
        statements = catalog_for(resolve_schema(schema)).health
        self._setup(_engine_reader(engine, statements, by_queue, _timeout(timeout)), namespace)

    @classmethod
    def on_worker_pool(
        cls,
        pool: asyncpg.Pool,
        loop: asyncio.AbstractEventLoop,
        *,
        schema: str,
        by_queue: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        namespace: str = "graphile_worker",
    ) -> QueueCollector:
        """A collector that runs its statement on a worker's asyncpg ``pool``, on the
        worker's event ``loop``, for scrapes served from another thread (the worker's
        ``metrics_port`` server). A scrape from the loop's own thread would block it, so it
        is refused (the scrape shows ``_queue_scrape_success 0``)."""
        collector = cls.__new__(cls)
        statements = catalog_for(resolve_schema(schema)).health
        reader = _pool_reader(pool, loop, statements, by_queue, _timeout(timeout))
        collector._setup(reader, namespace)
        return collector

    def _setup(self, read: Callable[[], _Rows], namespace: str) -> None:
        self._read = read
        prefix = f"{namespace}_" if namespace else ""
        self._jobs = f"{prefix}queue_jobs"
        self._oldest = f"{prefix}queue_oldest_ready_seconds"
        self._success = f"{prefix}queue_scrape_success"
        self._seconds = f"{prefix}queue_scrape_seconds"

    def describe(self) -> Iterable[Metric]:
        """The metric names, without running the statement (so registering is free)."""
        names = (self._jobs, self._oldest, self._success, self._seconds)
        return [GaugeMetricFamily(name, name) for name in names]

    def collect(self) -> Iterable[Metric]:
        """Run the statement and yield the gauges."""
        started = time.perf_counter()
        try:
            rows = self._read()
        except Exception as error:
            logger.warning("reading the queue's state for Prometheus failed: %s", error)
            rows = None
        elapsed = time.perf_counter() - started
        if rows is not None:
            jobs = GaugeMetricFamily(
                self._jobs, "Jobs by task, queue and state.", labels=("task", "queue", "state")
            )
            oldest = GaugeMetricFamily(
                self._oldest,
                "How long the longest-waiting ready job has been due.",
                labels=("task", "queue"),
            )
            for task, queue, *counts, oldest_ready in rows:
                labels = (task, queue or "")
                for state, count in zip(JOB_STATES, counts, strict=True):
                    jobs.add_metric((*labels, state), count)
                oldest.add_metric(labels, oldest_ready or 0.0)
            yield jobs
            yield oldest
        yield GaugeMetricFamily(
            self._success, "1 when the queue's state was read.", value=int(rows is not None)
        )
        yield GaugeMetricFamily(self._seconds, "Time to read the queue's state.", value=elapsed)


def _timeout(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"timeout must be a positive number of seconds, not {value!r}")
    return float(value)


def _engine_reader(
    engine: Engine, statements: HealthStatements, by_queue: bool, timeout: float
) -> Callable[[], _Rows]:
    set_timeout = statements.statement_timeout.clause
    counts = statements.queue_counts(by_queue=by_queue).clause
    milliseconds = str(int(timeout * 1000))

    def read() -> _Rows:
        with engine.connect() as connection:
            connection.execute(set_timeout, {"milliseconds": milliseconds})
            rows = connection.execute(counts).all()
            connection.rollback()
        return [tuple(row) for row in rows]

    return read


def _pool_reader(
    pool: asyncpg.Pool,
    loop: asyncio.AbstractEventLoop,
    statements: HealthStatements,
    by_queue: bool,
    timeout: float,
) -> Callable[[], _Rows]:
    set_timeout = statements.statement_timeout.numbered
    counts = statements.queue_counts(by_queue=by_queue).numbered
    milliseconds = str(int(timeout * 1000))

    async def fetch() -> _Rows:
        async with pool.acquire() as connection, connection.transaction(readonly=True):
            await connection.execute(set_timeout, milliseconds)
            return [tuple(row) for row in await connection.fetch(counts)]

    def read() -> _Rows:
        if _on_loop_thread(loop):
            raise RuntimeError("a scrape on the worker's own event loop would block it")
        future = asyncio.run_coroutine_threadsafe(fetch(), loop)
        try:
            return future.result(timeout + 1.0)
        except TimeoutError:
            future.cancel()
            raise

    return read


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop runs in this thread
        return False
