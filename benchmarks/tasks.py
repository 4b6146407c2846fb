"""The benchmark's task types, the Python twins of ``benchmarks/node/tasks``.

``log_if_999`` is the trivial job of the throughput runs: it logs one line for id 999 and
does nothing otherwise. ``latency`` tells a :class:`LatencyProbe` extension the moment it
started, which is how the latency run measures add->start time inside one process.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from sqlalchemy_graphile import Task, WorkerContext


class LogIf999(Task):
    """A job that does (almost) nothing."""

    IDENTIFIER: ClassVar[str] = "log_if_999"
    id: int

    async def run(self, ctx: WorkerContext) -> None:
        if self.id == 999:
            ctx.logger.info("job 999 ran")


class LatencyProbe:
    """Worker extension: futures the latency run waits on, resolved with start times.

    Lives in the worker's process and event loop; :meth:`expect` and :meth:`started` must
    be called from that loop.
    """

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[int]] = {}

    def expect(self, job_id: int) -> asyncio.Future[int]:
        """A future that resolves to the ``perf_counter_ns`` at which job ``job_id`` starts."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = future
        return future

    def started(self, job_id: int) -> None:
        """Record that job ``job_id`` has started now."""
        now = time.perf_counter_ns()
        future = self._waiting.pop(job_id, None)
        if future is not None and not future.done():
            future.set_result(now)


class Latency(Task):
    """A job that reports its start time to the worker's :class:`LatencyProbe`."""

    IDENTIFIER: ClassVar[str] = "latency"
    id: int

    async def run(self, ctx: WorkerContext) -> None:
        probe = ctx.get_ext(LatencyProbe)
        if probe is not None:
            probe.started(self.id)
