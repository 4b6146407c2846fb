"""The tasks the worker processes of the fault-injection tests run
(``run --tasks tests.chaos._tasks``).

Each writes its executions to the ledger (``tests/chaos/_ledger.py``) found through
``$SG_CHAOS_LEDGER_URL``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy_graphile import BatchTask, Task, WorkerContext

from . import _ledger

#: The exit status of a process killed by SIGKILL, as a shell reports it.
CRASH_STATUS = 137


def _row(ctx: WorkerContext, tag: str) -> dict[str, Any]:
    job = ctx.job
    return {"job_id": job.id, "job_key": job.key, "attempt": job.attempts, "tag": tag}


class Sleep(Task):
    """Starts, waits until the test opens its ``gate`` if it names one
    (:func:`~tests.chaos._ledger.open_gate`), sleeps ``seconds``, finishes with one side
    effect (keyed by the job id).

    A job that must still be running when the test kills or stops its worker waits at a
    gate the test opens afterwards, however slow the machine is.

    With ``finish_late`` the finish is written in the background, waiting for the database
    if it is down, and the task returns at once."""

    IDENTIFIER: ClassVar[str] = "chaos_sleep"
    seconds: float = 0.0
    tag: str = ""
    gate: str = ""
    finish_late: bool = False

    async def run(self, ctx: WorkerContext) -> None:
        await _ledger.record("start", **_row(ctx, self.tag))
        if self.gate:
            await _ledger.wait_for_gate(self.gate)
        await asyncio.sleep(self.seconds)
        if self.finish_late:
            _ledger.record_later(
                event="finish", effect=True, at=datetime.now(UTC), **_row(ctx, self.tag)
            )
        else:
            await _ledger.record("finish", effect=True, **_row(ctx, self.tag))


class Crash(Task):
    """A poison pill: starts, then ends the whole worker process at once."""

    IDENTIFIER: ClassVar[str] = "chaos_crash"

    async def run(self, ctx: WorkerContext) -> None:
        await _ledger.record("start", **_row(ctx, "crash"))
        os._exit(CRASH_STATUS)


class Fail(Task):
    """Starts, then raises every time."""

    IDENTIFIER: ClassVar[str] = "chaos_fail"

    async def run(self, ctx: WorkerContext) -> None:
        await _ledger.record("start", **_row(ctx, "fail"))
        raise RuntimeError("this task always fails")


class Typed(Task):
    """A task with a strict payload, for stored payloads that do not fit it."""

    IDENTIFIER: ClassVar[str] = "chaos_typed"
    count: int
    name: str

    async def run(self, ctx: WorkerContext) -> None:
        await _ledger.record("start", **_row(ctx, "typed"))
        await _ledger.record("finish", **_row(ctx, "typed"))


class Item(BatchTask):
    """A batch task: its stored payload must be a JSON array of items."""

    IDENTIFIER: ClassVar[str] = "chaos_items"
    n: int

    @classmethod
    async def run_batch(cls, items: list[Item], ctx: WorkerContext) -> None:
        await _ledger.record("start", **_row(ctx, "items"))
        await _ledger.record("finish", **_row(ctx, "items"))


class StubbornAsync(Task):
    """Starts, then waits ``seconds`` and swallows every cancellation meanwhile."""

    IDENTIFIER: ClassVar[str] = "chaos_stubborn_async"
    seconds: float = 60.0

    async def run(self, ctx: WorkerContext) -> None:
        await _ledger.record("start", **_row(ctx, "stubborn"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        while loop.time() < deadline:
            try:
                await asyncio.sleep(deadline - loop.time())
            except asyncio.CancelledError:
                continue  # deliberately ignored: this task does not honour cancellation
        await _ledger.record("finish", **_row(ctx, "stubborn"))


class StubbornSync(Task):
    """A plain ``def`` task (run in a thread) that blocks for ``seconds``."""

    IDENTIFIER: ClassVar[str] = "chaos_stubborn_sync"
    seconds: float = 60.0

    def run(self, ctx: WorkerContext) -> None:
        asyncio.run(_ledger.record("start", **_row(ctx, "stubborn")))
        time.sleep(self.seconds)
        asyncio.run(_ledger.record("finish", **_row(ctx, "stubborn")))
