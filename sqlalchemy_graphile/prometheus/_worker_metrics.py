"""Per-process metrics of workers, fed by their events and their latency observer."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .._recovery import RecoveredJob
from ..errors import ConfigurationError
from ..events import JobEvent, JobRecoveredEvent, SlotEvent, WorkerEvents
from ..job import Job


class _Concurrency(Protocol):
    @property
    def concurrency(self) -> int: ...


class MeteredWorker(Protocol):
    """What the metrics read of a :class:`~sqlalchemy_graphile.Worker` (so that this
    module needs nothing of the worker package)."""

    @property
    def events(self) -> WorkerEvents: ...
    @property
    def running(self) -> bool: ...
    @property
    def options(self) -> _Concurrency: ...
    @property
    def busy_slots(self) -> int: ...
    @property
    def local_queue_length(self) -> int: ...


#: Seconds; a job may run for a millisecond or an hour.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Seconds a due job waited before it started.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Seconds for one fetch or one write of outcomes.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_LABELS = ("task", "queue")


def process_registry() -> CollectorRegistry:
    """A new registry holding the process's own metrics (CPU, memory, open files, garbage
    collection, Python version), as ``prometheus_client``'s default registry does. The
    worker serves one of these on ``metrics_port``."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


@dataclass(frozen=True, slots=True)
class _Series:
    """The children of every per-job metric for one (task, queue)."""

    started: Any
    completed: Any
    failed: Any
    permanently_failed: Any
    recovered: Any
    duration: Any
    wait: Any


class WorkerMetrics:
    """The metrics of the workers of one process, registered on ``registry``.

    ``registry`` defaults to ``prometheus_client``'s global one, so that an application
    serving ``/metrics`` already (``make_asgi_app()``, ``start_http_server()``, ...) shows
    them at once. Give each worker of the process the same instance::

        metrics = WorkerMetrics()
        worker = Worker(url, tasks=[SendEmail], metrics=metrics)

    With ``by_queue=False`` the per-job metrics carry no ``queue`` label: use it when your
    queue names are per entity (``user:123``), which would make a series per entity.

    Names (prefix ``namespace``, default ``graphile_worker``), labels ``task`` and ``queue``
    (``""`` outside named queues) on the per-job ones:

    * ``_jobs_started_total``, ``_jobs_completed_total``, ``_jobs_failed_total`` (every
      failed attempt), ``_jobs_permanently_failed_total`` (failed with no attempt left),
      ``_jobs_recovered_total`` (given back after their worker died);
    * ``_job_run_seconds``: histogram of how long tasks ran (success or failure);
    * ``_job_queue_wait_seconds``: histogram of the time from when a job was due
      (the later of ``run_at`` and ``created_at``) to its start, on this machine's clock;
    * ``_slots`` and ``_slots_busy``: gauges of slots, and of slots holding a job;
    * ``_local_queue_jobs``: gauge of jobs fetched into local queues and not started;
    * ``_fetch_seconds`` and ``_release_seconds``: histograms of the duration of each
      fetch statement and of each write of outcomes (one job, or a batch).

    Raises :class:`ConfigurationError` for a registry that already holds these names.
    Counting costs a few microseconds per job; a worker without metrics does none of it.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry = REGISTRY,
        by_queue: bool = True,
        namespace: str = "graphile_worker",
    ) -> None:
        if not isinstance(registry, CollectorRegistry):
            raise ConfigurationError(
                f"registry must be a prometheus_client CollectorRegistry, not {registry!r}"
            )
        self.registry = registry
        self._by_queue = by_queue
        self._namespace = namespace
        self._workers: list[MeteredWorker] = []
        self._series: dict[tuple[str, str], _Series] = {}
        self._running: dict[str, float] = {}
        metrics: list[Any] = []
        try:
            self._started = _counter(metrics, registry, namespace, "jobs_started", "Jobs started.")
            self._completed = _counter(
                metrics, registry, namespace, "jobs_completed", "Jobs that succeeded."
            )
            self._failed = _counter(
                metrics, registry, namespace, "jobs_failed", "Failed attempts of jobs."
            )
            self._permanently_failed = _counter(
                metrics,
                registry,
                namespace,
                "jobs_permanently_failed",
                "Jobs that failed with no attempt left.",
            )
            self._recovered = _counter(
                metrics,
                registry,
                namespace,
                "jobs_recovered",
                "Jobs given back to the queue after their worker died.",
            )
            self._duration = _histogram(
                metrics,
                registry,
                namespace,
                "job_run_seconds",
                "How long tasks ran.",
                RUN_BUCKETS,
                _LABELS,
            )
            self._wait = _histogram(
                metrics,
                registry,
                namespace,
                "job_queue_wait_seconds",
                "Time from when a job was due to its start.",
                WAIT_BUCKETS,
                _LABELS,
            )
            self._fetch = _histogram(
                metrics,
                registry,
                namespace,
                "fetch_seconds",
                "Duration of each fetch of jobs.",
                LATENCY_BUCKETS,
                (),
            )
            self._release = _histogram(
                metrics,
                registry,
                namespace,
                "release_seconds",
                "Duration of each write of job outcomes.",
                LATENCY_BUCKETS,
                (),
            )
            self._load = _LoadCollector(self, namespace)
            registry.register(self._load)
            metrics.append(self._load)
        except ValueError as error:
            for metric in metrics:
                registry.unregister(metric)
            raise ConfigurationError(
                f"the registry already holds worker metrics ({error}); give every worker of a "
                "process the same WorkerMetrics"
            ) from None

    # -- wiring ----------------------------------------------------------------------

    def attach(self, worker: MeteredWorker) -> None:
        """Count ``worker``'s jobs and show its slots. ``Worker(metrics=...)`` calls this
        (and also reports each fetch's and release's duration, which a worker built without
        ``metrics`` cannot)."""
        self._workers.append(worker)
        events = worker.events
        if any(other.events is events for other in self._workers[:-1]):
            return  # workers sharing one WorkerEvents: its jobs are counted once already
        events.on("job:start", self._job_started)
        events.on("job:success", self._job_succeeded)
        events.on("job:error", self._job_errored)
        events.on("job:failed", self._job_failed)
        events.on("job:recovered", self._job_recovered)
        events.on("worker:stop", self._slot_stopped)

    # -- the latency observer ----------------------------------------------------------

    def fetched(self, seconds: float, jobs: int) -> None:
        self._fetch.observe(seconds)

    def released(self, seconds: float, jobs: int) -> None:
        self._release.observe(seconds)

    # -- events --------------------------------------------------------------------------

    def _series_of(self, job: Job | RecoveredJob) -> _Series:
        key = (job.task_identifier, (job.queue_name or "") if self._by_queue else "")
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(
                started=self._started.labels(*key),
                completed=self._completed.labels(*key),
                failed=self._failed.labels(*key),
                permanently_failed=self._permanently_failed.labels(*key),
                recovered=self._recovered.labels(*key),
                duration=self._duration.labels(*key),
                wait=self._wait.labels(*key),
            )
        return series

    def _job_started(self, event: JobEvent) -> None:
        job = event.job
        self._running[event.worker_id] = time.perf_counter()
        series = self._series_of(job)
        series.started.inc()
        due = max(job.run_at, job.created_at).timestamp()
        series.wait.observe(max(0.0, time.time() - due))

    def _ran(self, event: JobEvent) -> _Series:
        series = self._series_of(event.job)
        started = self._running.pop(event.worker_id, None)
        if started is not None:
            series.duration.observe(time.perf_counter() - started)
        return series

    def _job_succeeded(self, event: JobEvent) -> None:
        self._ran(event).completed.inc()

    def _job_errored(self, event: JobEvent) -> None:
        self._ran(event).failed.inc()

    def _slot_stopped(self, event: SlotEvent) -> None:
        self._running.pop(event.worker_id, None)

    def _job_failed(self, event: JobEvent) -> None:
        self._series_of(event.job).permanently_failed.inc()

    def _job_recovered(self, event: JobRecoveredEvent) -> None:
        self._series_of(event.job).recovered.inc()

    # -- scrape-time gauges --------------------------------------------------------------

    def _load_now(self) -> tuple[int, int, int]:
        """(slots, busy slots, locally queued jobs) of the running workers."""
        slots = busy = cached = 0
        for worker in list(self._workers):
            if worker.running:
                slots += worker.options.concurrency
                busy += worker.busy_slots
                cached += worker.local_queue_length
        return slots, busy, cached


class _LoadCollector:
    """Reads the attached workers' slots and local queues when Prometheus scrapes."""

    def __init__(self, metrics: WorkerMetrics, namespace: str) -> None:
        self._metrics = metrics
        prefix = f"{namespace}_" if namespace else ""
        self._names = (f"{prefix}slots", f"{prefix}slots_busy", f"{prefix}local_queue_jobs")

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(name, name) for name in self._names]

    def collect(self) -> Iterable[Metric]:
        values = self._metrics._load_now()
        docs = (
            "Job slots of the running workers (their concurrency).",
            "Slots holding a job: running it or recording its outcome.",
            "Jobs fetched into local queues that no slot has taken yet.",
        )
        for name, doc, value in zip(self._names, docs, values, strict=True):
            yield GaugeMetricFamily(name, doc, value=value)


def _counter(
    metrics: list[Any], registry: CollectorRegistry, namespace: str, name: str, doc: str
) -> Counter:
    counter = Counter(name, doc, _LABELS, namespace=namespace, registry=registry)
    metrics.append(counter)
    return counter


def _histogram(
    metrics: list[Any],
    registry: CollectorRegistry,
    namespace: str,
    name: str,
    doc: str,
    buckets: tuple[float, ...],
    labels: tuple[str, ...],
) -> Histogram:
    histogram = Histogram(
        name, doc, labels, namespace=namespace, registry=registry, buckets=buckets
    )
    metrics.append(histogram)
    return histogram
