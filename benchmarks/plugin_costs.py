"""``python -m benchmarks.plugin_costs``: the CPU each job spends in plugin hooks, measured
directly, without a database (the end-to-end figures come from ``python -m benchmarks
--plugins hooks tracing``).

For the payload of the benchmark's task (``{"id": i}``) it times, per job: what adding and
running cost with no plugin registered (the checks that find none, and the ``_trace`` scan
before validation), and the hook calls of the ``hooks`` and ``tracing`` sets of
:mod:`benchmarks._plugins` on the add side (``before_job_schedule``) and the run side
(``before_job_run`` + ``after_job_run``). Prints one line per figure, in microseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy_graphile import Job, JobRun, JobRunOutcome, JobRunResult
from sqlalchemy_graphile._job_input import DEFAULT_SPEC, NewJob
from sqlalchemy_graphile._payload import without_trace
from sqlalchemy_graphile._plugins import Plugins

from ._plugins import PLUGIN_SETS, ChildPlugins

ROUNDS = 50_000
_NOW = datetime.now(UTC)


def _job(payload_json: str) -> Job:
    return Job(
        id=1,
        task_identifier="log_if_999",
        queue_name=None,
        payload_json=payload_json,
        priority=0,
        run_at=_NOW,
        attempts=1,
        max_attempts=25,
        last_error=None,
        created_at=_NOW,
        updated_at=_NOW,
        key=None,
        locked_at=_NOW,
        locked_by="sgpool-bench",
        revision=0,
        flags=None,
    )


def _per_call(work: Callable[[], Any]) -> float:
    """Microseconds of CPU per call of ``work``, over :data:`ROUNDS` calls."""
    started = time.process_time()
    for _ in range(ROUNDS):
        work()
    return (time.process_time() - started) / ROUNDS * 1e6


async def _per_await(work: Callable[[], Awaitable[Any]]) -> float:
    started = time.process_time()
    for _ in range(ROUNDS):
        await work()
    return (time.process_time() - started) / ROUNDS * 1e6


def _add_cost(plugins: Plugins, adding: Callable[[], AbstractContextManager[Any]]) -> float:
    job = NewJob("log_if_999", '{"id":1}', DEFAULT_SPEC)
    with adding():
        return _per_call(lambda: plugins.schedule(job))


async def _run_cost(plugins: Plugins, payload_json: str) -> float:
    job = _job(payload_json)
    result = JobRunResult(JobRunOutcome.SUCCESS, 0.001)

    async def one_run() -> None:
        run = JobRun(job, "sgpool-bench")
        await plugins.before_run(run)
        await plugins.after_run(run, result)

    return await _per_await(one_run)


async def measure() -> dict[str, float]:
    figures: dict[str, float] = {}
    none = Plugins(())
    plain = '{"id":1}'
    figures["no plugins: checks per add"] = _per_call(lambda: none.schedules)
    figures["no plugins: checks per run"] = _per_call(lambda: none.runs)
    figures["no plugins: _trace scan before validation"] = _per_call(lambda: without_trace(plain))
    traced = (
        '{"id":1,"_trace":{"flags":1,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",'
        '"span_id":"00f067aa0ba902b7"}}'
    )
    figures["a payload with _trace: removing it before validation"] = _per_call(
        lambda: without_trace(traced)
    )
    for name in PLUGIN_SETS:
        child = ChildPlugins(name)
        plugins = Plugins(child.plugins)
        figures[f"{name}: before_job_schedule per add"] = _add_cost(plugins, child.adding)
        stored = traced if name == "tracing" else plain
        figures[f"{name}: before_job_run + after_job_run per run"] = await _run_cost(
            plugins, stored
        )
        child.close()
    return figures


def main() -> None:
    for label, microseconds in asyncio.run(measure()).items():
        print(f"{label}: {microseconds:.2f} us")


if __name__ == "__main__":
    main()
