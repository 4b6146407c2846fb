"""Prometheus metrics for workers and for the queue (the ``prometheus`` extra).

``pip install 'sqlalchemy-graphile[prometheus]'``. Nothing here is imported by the rest of
the package: a worker loads it only when asked for metrics.

* :class:`WorkerMetrics`: what one process's workers do (jobs started, completed, failed,
  run duration, queue wait, busy slots, fetch and release latency). Fed by the worker
  itself: ``Worker(..., metrics=WorkerMetrics())``.
* :class:`QueueCollector`: the state of the whole queue (ready, scheduled, locked and
  failed jobs per task and queue), read with one query each time Prometheus scrapes.
* ``Worker(..., metrics_port=9100)`` (``run --metrics-port 9100``) serves both, and the
  process's own metrics, on ``http://HOST:9100/metrics``.

See ``docs/operations.md`` for the metric names, the recommended setup with several worker
processes, and how to serve them from your own application instead.
"""

from __future__ import annotations

try:
    import prometheus_client  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a fresh interpreter
    raise ImportError(
        "sqlalchemy_graphile.prometheus needs the prometheus extra: "
        "pip install 'sqlalchemy-graphile[prometheus]'",
        name=error.name,
    ) from error

from ._queue_collector import QueueCollector
from ._worker_metrics import WorkerMetrics, process_registry

__all__ = ["QueueCollector", "WorkerMetrics", "process_registry"]
