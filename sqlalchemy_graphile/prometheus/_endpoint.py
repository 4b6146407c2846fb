"""The ``/metrics`` endpoint a worker serves on ``metrics_port``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from prometheus_client import start_http_server

from ..errors import ConfigurationError
from ._queue_collector import QueueCollector
from ._worker_metrics import WorkerMetrics

if TYPE_CHECKING:
    from http.server import HTTPServer
    from threading import Thread

    import asyncpg

logger = logging.getLogger("sqlalchemy_graphile.prometheus")


class MetricsEndpoint:
    """Serves ``metrics.registry`` over HTTP on ``port`` (all interfaces) while a worker runs,
    with a :class:`QueueCollector` on the worker's pool when ``queue_metrics``."""

    def __init__(
        self, metrics: WorkerMetrics, *, port: int, schema: str, queue_metrics: bool
    ) -> None:
        self._metrics = metrics
        self._port = port
        self._schema = schema
        self._queue_metrics = queue_metrics
        self._server: HTTPServer | None = None
        self._thread: Thread | None = None
        self._collector: QueueCollector | None = None

    @property
    def port(self) -> int | None:
        """The port being served (the one picked when 0 was asked for), else ``None``."""
        return self._server.server_port if self._server is not None else None

    def start(self, pool: asyncpg.Pool) -> None:
        """Start serving, reading the queue's state through ``pool`` on the running loop.
        Raises :class:`ConfigurationError` when the port cannot be bound."""
        registry = self._metrics.registry
        if self._queue_metrics:
            self._collector = QueueCollector.on_worker_pool(
                pool, asyncio.get_running_loop(), schema=self._schema
            )
            registry.register(self._collector)
        try:
            self._server, self._thread = start_http_server(self._port, registry=registry)
        except OSError as error:
            self._unregister()
            raise ConfigurationError(
                f"cannot serve metrics on port {self._port}: {error.strerror or error}"
            ) from None
        logger.info("serving Prometheus metrics on http://0.0.0.0:%d/metrics", self.port)

    async def stop(self) -> None:
        """Stop serving (waiting for a scrape in progress) and forget the pool."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join)
        self._unregister()

    def _unregister(self) -> None:
        if self._collector is not None:
            self._metrics.registry.unregister(self._collector)
            self._collector = None
