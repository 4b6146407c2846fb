"""What runs inside the Python side's child processes.

``python -m benchmarks._pyproc COMMAND ...``, one command per measurement:

* ``enqueue URL N [--method jobs|ids|copy]``: add N ``log_if_999`` jobs with one
  ``WorkerUtils.add_jobs`` call (``ids``: with ``return_jobs=False``; ``copy``: one
  ``WorkerUtils.copy_jobs`` call) on a connection opened beforehand; prints
  ``{"call_s": ...}``.
* ``once URL CONCURRENCY MODE``: run a worker until no job is runnable, then exit.
* ``latency URL CONCURRENCY SAMPLES WARMUP MODE``: one worker (LISTEN on) and, on a
  dedicated connection, one job added at a time; each sample is the time from the start of
  the add call to the start of the task. Prints ``{"samples_ms": [...]}`` and, to tell
  the two parts apart, how long each add call itself took (``"add_call_ms"``).
* ``serve URL CONCURRENCY MODE``: run a worker until SIGINT / SIGTERM (the soak run).

With ``--metrics`` every worker counts its jobs in a
:class:`~sqlalchemy_graphile.prometheus.WorkerMetrics`, and with ``--plugins hooks`` or
``--plugins tracing`` workers and adders run with those plugins (see :mod:`._plugins`), to
measure what that costs; ``--asynchronous-release-commit`` runs workers with that option.

Like Node's ``maxPoolSize: C + 1``, every worker gets ``max_pool_size=concurrency + 1``, and
the mode's options from :data:`benchmarks._modes.PYTHON_OPTIONS`.

Results go to stdout as one JSON line; logs go to stderr at WARNING level, so that neither
worker pays for a log line per job.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy_graphile import Worker

from ._child import run_child
from ._modes import ENQUEUE_METHODS, MODES, PYTHON_OPTIONS
from ._plugins import PLUGIN_SETS, ChildPlugins
from .tasks import Latency, LatencyProbe, LogIf999

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: How long one latency sample may take before the run is declared broken.
SAMPLE_TIMEOUT_S = 30.0


def _engine(url: str) -> AsyncEngine:
    """An asyncpg engine holding a single connection: the dedicated adding connection.
    (SQLAlchemy is imported here, not at the top, so that a worker-only child does not
    pay for it.)"""
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(
        make_url(url).set(drivername="postgresql+asyncpg"), pool_size=1, max_overflow=0
    )


async def enqueue(url: str, count: int, method: str, plugins: ChildPlugins) -> dict[str, Any]:
    """Time one ``add_jobs`` (or ``copy_jobs``) call adding ``count`` jobs (its own
    transaction)."""
    from sqlalchemy_graphile import WorkerUtils

    jobs = [(LogIf999(id=i), None) for i in range(count)]
    engine = _engine(url)
    try:
        async with engine.connect():
            pass  # open the connection before the clock starts, as makeWorkerUtils does
        utils = WorkerUtils(engine, plugins=plugins.plugins)
        with plugins.adding():
            started = time.perf_counter()
            if method == "copy":
                added: list[Any] = await utils.copy_jobs(jobs)
            else:
                added = await utils.add_jobs(jobs, return_jobs=method == "jobs")
            seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
        plugins.close()
    if len(added) != count:
        raise RuntimeError(f"add_jobs returned {len(added)} jobs, expected {count}")
    return {"call_s": seconds, "jobs": len(added)}


@dataclass(frozen=True)
class Extras:
    """What a child's workers run with on top of the mode's options."""

    metrics: bool = False
    asynchronous_commit: bool = False


async def once(
    url: str, concurrency: int, mode: str, extras: Extras, plugins: ChildPlugins
) -> dict[str, Any]:
    """Run every runnable job, then return."""
    worker = Worker(
        url,
        tasks=[LogIf999],
        concurrency=concurrency,
        max_pool_size=concurrency + 1,
        handle_signals=False,
        plugins=plugins.plugins,
        **_options(mode, extras),
    )
    try:
        await worker.run_once()
    finally:
        plugins.close()
    return {}


async def latency(
    url: str,
    concurrency: int,
    samples: int,
    warmup: int,
    mode: str,
    extras: Extras,
    plugins: ChildPlugins,
) -> dict[str, Any]:
    """Sample add->start latency with a worker running in this process."""
    from sqlalchemy_graphile import WorkerUtils

    probe = LatencyProbe()
    worker = Worker(
        url,
        tasks=[Latency],
        concurrency=concurrency,
        max_pool_size=concurrency + 1,
        handle_signals=False,
        extensions=[probe],
        plugins=plugins.plugins,
        **_options(mode, extras),
    )
    engine = _engine(url)
    running = asyncio.create_task(worker.run())
    measured: list[float] = []
    add_calls: list[float] = []
    try:
        utils = WorkerUtils(engine, plugins=plugins.plugins)
        for job_id in range(warmup + samples):
            started = probe.expect(job_id)
            with plugins.adding():
                added_at = time.perf_counter_ns()
                await utils.add_job(Latency(id=job_id))
                returned_at = time.perf_counter_ns()
            started_at = await _start_of(started, running)
            if job_id >= warmup:
                measured.append((started_at - added_at) / 1e6)
                add_calls.append((returned_at - added_at) / 1e6)
    finally:
        await worker.stop()
        await running
        await engine.dispose()
        plugins.close()
    return {"samples_ms": measured, "add_call_ms": add_calls}


async def _start_of(started: asyncio.Future[int], running: asyncio.Task[None]) -> int:
    """Wait for the job's start time; fail fast if the worker stops or the job never runs."""
    either: set[asyncio.Future[Any]] = {started, running}
    done, _ = await asyncio.wait(
        either, timeout=SAMPLE_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
    )
    if started in done:
        return started.result()
    if running in done:
        running.result()  # raises the worker's error, if it had one
        raise RuntimeError("the worker stopped before the job started")
    raise TimeoutError(f"the job did not start within {SAMPLE_TIMEOUT_S:.0f} s")


async def serve(url: str, concurrency: int, mode: str, extras: Extras) -> dict[str, Any]:
    """Run until a signal stops the worker gracefully."""
    worker = Worker(
        url,
        tasks=[LogIf999],
        concurrency=concurrency,
        max_pool_size=concurrency + 1,
        **_options(mode, extras),
    )
    await worker.run()
    return {}


def _options(mode: str, extras: Extras) -> dict[str, Any]:
    """The mode's worker options, plus a :class:`WorkerMetrics` with ``--metrics`` and
    ``asynchronous_release_commit`` with ``--asynchronous-release-commit``."""
    options = dict(PYTHON_OPTIONS[mode])
    if extras.asynchronous_commit:
        options["asynchronous_release_commit"] = True
    if extras.metrics:
        from prometheus_client import CollectorRegistry

        from sqlalchemy_graphile.prometheus import WorkerMetrics

        options["metrics"] = WorkerMetrics(registry=CollectorRegistry())
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._pyproc")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--metrics", action="store_true", help="count jobs in WorkerMetrics")
    parser.add_argument(
        "--asynchronous-release-commit",
        action="store_true",
        help="run workers with asynchronous_release_commit=True",
    )
    parser.add_argument("--plugins", choices=PLUGIN_SETS, help="run with these plugins")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("enqueue")
    command.add_argument("url")
    command.add_argument("count", type=int)
    command.add_argument("--method", choices=ENQUEUE_METHODS, default="jobs")
    for name in ("once", "serve"):
        command = commands.add_parser(name)
        command.add_argument("url")
        command.add_argument("concurrency", type=int)
        command.add_argument("mode", choices=MODES)
    command = commands.add_parser("latency")
    command.add_argument("url")
    command.add_argument("concurrency", type=int)
    command.add_argument("samples", type=int)
    command.add_argument("warmup", type=int)
    command.add_argument("mode", choices=MODES)
    return parser


def _coroutine(args: argparse.Namespace) -> Coroutine[Any, Any, dict[str, Any]]:
    plugins = ChildPlugins(args.plugins)
    extras = Extras(args.metrics, args.asynchronous_release_commit)
    if args.command == "enqueue":
        return enqueue(args.url, args.count, args.method, plugins)
    if args.command == "once":
        return once(args.url, args.concurrency, args.mode, extras, plugins)
    if args.command == "latency":
        return latency(
            args.url, args.concurrency, args.samples, args.warmup, args.mode, extras, plugins
        )
    return serve(args.url, args.concurrency, args.mode, extras)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    run_child(args.loop, _coroutine(args))


if __name__ == "__main__":
    main()
