"""Prometheus metrics from a real worker running real jobs, scraped over real HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine

from sqlalchemy_graphile import ConfigurationError, Worker
from sqlalchemy_graphile.prometheus import QueueCollector, WorkerMetrics

from .._processes import reaped, terminate, wait_until
from ._worker_support import Gated, Job2, Job3, Recorder, add, eventually, make_worker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def scrape_url(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        body: bytes = response.read()
    return body.decode()


async def scrape(port: int | None) -> Samples:
    """Scrape the endpoint from another thread, as Prometheus would."""
    assert port is not None
    return parse(await asyncio.to_thread(scrape_url, f"http://127.0.0.1:{port}/metrics"))


@pytest.fixture
def sync_psycopg_engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


async def test_a_running_worker_serves_its_metrics_and_the_queue_s(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    add(db, "job2", "{}", queue_name="mail")
    add(db, "job3", "{}", max_attempts=1)
    add(db, "job2", "{}", run_at="2999-01-01T00:00:00Z")
    worker = make_worker(db_url, Job2, Job3, Gated, rec=rec, concurrency=2, metrics_port=0)
    rec.fail_with = ValueError("no")
    async with worker:
        port = worker.metrics_port
        assert port not in (None, 0)
        gated = add(db, "gated", "{}")
        await rec.wait_started()

        async def failure_counted() -> Any:
            # job3's failure is counted once written, which may be after gated started.
            samples = await scrape(port)
            failing = {"task": "job3", "queue": ""}
            return (
                samples if value(samples, "graphile_worker_jobs_failed_total", **failing) else None
            )

        samples = await eventually(failure_counted)
        rec.gate.set()
    mail = {"task": "job2", "queue": "mail"}
    assert value(samples, "graphile_worker_jobs_started_total", **mail) == 1
    assert value(samples, "graphile_worker_jobs_completed_total", **mail) == 1
    assert value(samples, "graphile_worker_job_run_seconds_count", **mail) == 1
    assert value(samples, "graphile_worker_job_queue_wait_seconds_count", **mail) == 1
    failing = {"task": "job3", "queue": ""}
    assert value(samples, "graphile_worker_jobs_failed_total", **failing) == 1
    assert value(samples, "graphile_worker_jobs_permanently_failed_total", **failing) == 1
    assert value(samples, "graphile_worker_jobs_started_total", task="gated", queue="") == 1
    assert value(samples, "graphile_worker_slots") == 2
    assert value(samples, "graphile_worker_slots_busy") == 1
    assert value(samples, "graphile_worker_local_queue_jobs") == 0
    assert value(samples, "graphile_worker_fetch_seconds_count") >= 3
    assert value(samples, "graphile_worker_release_seconds_count") == 2
    # Queue-level gauges, read by the scrape's own query.
    queue = "graphile_worker_queue_jobs"
    assert value(samples, queue, task="gated", queue="", state="locked") == 1
    assert value(samples, queue, task="job2", queue="", state="scheduled") == 1
    assert value(samples, queue, task="job3", queue="", state="failed") == 1
    assert value(samples, queue, task="job2", queue="", state="ready") == 0
    assert value(samples, "graphile_worker_queue_scrape_success") == 1
    # The process's own metrics come along.
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)
    assert rec.seen("gated") == [0]
    assert not db.execute("select 1 from graphile_worker.jobs where id = %s", (gated,)).fetchall()
    # Once the worker has stopped, nothing listens on the port any more.
    with pytest.raises(urllib.error.URLError):
        scrape_url(f"http://127.0.0.1:{port}/metrics")


async def test_the_local_queue_gauge_counts_jobs_waiting_for_a_slot(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    add(db, "gated", "{}", priority=-1)
    add(db, "job2", "{}")
    add(db, "job2", "{}")
    worker = make_worker(db_url, Gated, Job2, rec=rec, local_queue_size=10, metrics_port=0)
    async with worker, rec.gate_opened_at_exit():
        await rec.wait_started()
        samples = await scrape(worker.metrics_port)
        rec.gate.set()
    assert value(samples, "graphile_worker_local_queue_jobs") == 2
    assert value(samples, "graphile_worker_slots_busy") == 1
    assert value(samples, "graphile_worker_fetch_seconds_count") >= 1


async def test_one_worker_metrics_object_serves_several_workers(
    db_url: str, db: psycopg.Connection
) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry=registry, by_queue=False)
    for _ in range(2):
        add(db, "job2", "{}", queue_name="mail")
    for _ in range(2):
        await make_worker(db_url, Job2, metrics=metrics).run_once()
    samples = parse(_render(registry))
    assert value(samples, "graphile_worker_jobs_completed_total", task="job2", queue="") == 2
    with pytest.raises(ConfigurationError, match="already holds worker metrics"):
        WorkerMetrics(registry=registry)
    with pytest.raises(ConfigurationError, match="must be a WorkerMetrics"):
        make_worker(db_url, Job2, metrics=object())


def _render(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_queue_collectors_in_several_processes_read_the_same_state(
    db: psycopg.Connection, sync_psycopg_engine: Engine, db_url: str
) -> None:
    add(db, "a", "{}", queue_name="q1")
    add(db, "a", "{}", queue_name="q1")
    add(db, "b", "{}", run_at="2999-01-01T00:00:00Z")
    db.execute(
        "update graphile_worker._private_jobs set run_at = now() - interval '90 seconds'"
        " where task_id = (select id from graphile_worker._private_tasks where identifier = 'a')"
    )
    other = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        scrapes = []
        for engine in (sync_psycopg_engine, other):
            registry = CollectorRegistry()
            registry.register(QueueCollector(engine))
            scrapes.append(parse(_render(registry)))
    finally:
        other.dispose()
    first, second = scrapes
    counts = {k: v for k, v in first.items() if k[0] == "graphile_worker_queue_jobs"}
    assert counts == {k: v for k, v in second.items() if k[0] == "graphile_worker_queue_jobs"}
    assert value(first, "graphile_worker_queue_jobs", task="a", queue="q1", state="ready") == 2
    b_scheduled = value(first, "graphile_worker_queue_jobs", task="b", queue="", state="scheduled")
    assert b_scheduled == 1
    oldest = value(first, "graphile_worker_queue_oldest_ready_seconds", task="a", queue="q1")
    assert 90 <= oldest < 3600
    assert value(first, "graphile_worker_queue_oldest_ready_seconds", task="b", queue="") == 0


def test_a_queue_collector_that_cannot_read_reports_it(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        registry = CollectorRegistry()
        registry.register(QueueCollector(engine, by_queue=False))  # registering runs nothing
        samples = parse(_render(registry))
    finally:
        engine.dispose()
    assert value(samples, "graphile_worker_queue_scrape_success") == 0
    assert not any(name == "graphile_worker_queue_jobs" for name, _ in samples)
    assert "reading the queue's state for Prometheus failed" in caplog.text


def test_a_queue_collector_refuses_an_async_engine(async_engine: AsyncEngine) -> None:
    with pytest.raises(ConfigurationError, match="synchronous SQLAlchemy Engine"):
        QueueCollector(async_engine)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        QueueCollector(create_engine("postgresql+psycopg://"), timeout=0)


def test_without_metrics_no_job_event_is_built(db_url: str) -> None:
    # Built directly: make_worker subscribes its recorder to job:error.
    names = ("job:start", "job:success", "job:error", "job:failed", "worker:stop")
    plain = Worker(db_url, tasks=[Job2], handle_signals=False)
    assert not any(plain.events.listening(name) for name in names)
    metrics = WorkerMetrics(registry=CollectorRegistry())
    measured = Worker(db_url, tasks=[Job2], handle_signals=False, metrics=metrics)
    assert all(measured.events.listening(n) for n in names)


@pytest.mark.parametrize("port", [-1, 65536, "9100", True, 1.5])
def test_bad_metrics_ports_are_refused(db_url: str, port: Any) -> None:
    with pytest.raises(ConfigurationError, match="metrics_port"):
        make_worker(db_url, Job2, metrics_port=port)


async def test_a_taken_port_is_a_clear_error_and_leaves_nothing_behind(
    db_url: str, db: psycopg.Connection
) -> None:
    first = make_worker(db_url, Job2, metrics_port=0)
    async with first:
        second = make_worker(db_url, Job2, metrics_port=first.metrics_port)
        with pytest.raises(ConfigurationError, match=f"port {first.metrics_port}"):
            await second.run_once()
        assert not second.running


_TASKS = """
from typing import ClassVar

from sqlalchemy_graphile import Task, WorkerContext


class Hello(Task):
    IDENTIFIER: ClassVar[str] = "hello"

    async def run(self, ctx: WorkerContext) -> None:
        ctx.logger.info("hello")
"""


def test_run_metrics_port_serves_metrics_from_a_worker_process(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    (tmp_path / "metrics_cli_tasks.py").write_text(textwrap.dedent(_TASKS), encoding="utf-8")
    add(db, "hello", "{}")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    log_path = tmp_path / "worker.log"
    command = [sys.executable, "-m", "sqlalchemy_graphile", "-c", db_url, "run"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command, "--tasks", "metrics_cli_tasks", "--metrics-port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = re.compile(r"serving Prometheus metrics on http://0\.0\.0\.0:(\d+)/metrics")
    with reaped(process):
        wait_until(lambda: served.search(log_path.read_text()), process, log_path)
        match = served.search(log_path.read_text())
        assert match is not None
        url = f"http://127.0.0.1:{match.group(1)}/metrics"

        def completed() -> bool:
            samples = parse(scrape_url(url))
            key = (
                "graphile_worker_jobs_completed_total",
                frozenset({"task": "hello", "queue": ""}.items()),
            )
            return samples.get(key) == 1

        wait_until(completed, process, log_path)
        assert terminate(process, log_path) == 0, log_path.read_text()


async def test_a_worker_pool_collector_refuses_to_block_its_own_loop(db_url: str) -> None:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    try:
        collector = QueueCollector.on_worker_pool(
            pool, asyncio.get_running_loop(), schema="graphile_worker"
        )

        def success(metrics: list[Metric]) -> float:
            family = next(m for m in metrics if m.name == "graphile_worker_queue_scrape_success")
            return family.samples[0].value

        assert success(list(collector.collect())) == 0  # on the loop: refused at once
        assert success(await asyncio.to_thread(lambda: list(collector.collect()))) == 1
    finally:
        await pool.close()
