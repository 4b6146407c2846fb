"""A forceful shutdown does not wait for task code that ignores cancellation."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import psycopg
import pytest

from sqlalchemy_graphile import Task, WorkerContext
from sqlalchemy_graphile.worker import _pool

from ._worker_support import Recorder, jobs, locks, make_worker

pytestmark = pytest.mark.schema_flavours("ours", "node")


class IgnoresCancellation(Task):
    """Runs until the recorder's gate opens, swallowing every cancellation meanwhile."""

    IDENTIFIER: ClassVar[str] = "ignores_cancellation"

    async def run(self, ctx: WorkerContext) -> None:
        rec = ctx.get_ext(Recorder)
        assert rec is not None
        rec.mark_started()
        while not rec.gate.is_set():
            try:
                await rec.gate.wait()
            except asyncio.CancelledError:
                rec.calls.append(("cancelled", None))


@pytest.mark.parametrize(
    "graceful_first", [False, True], ids=["forceful", "graceful-then-forceful"]
)
async def test_forceful_stop_abandons_a_task_that_ignores_cancellation(
    db_url: str, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, graceful_first: bool
) -> None:
    monkeypatch.setattr(_pool, "FORCEFUL_STEP_TIMEOUT", 0.2)
    rec = Recorder()
    db.execute("select graphile_worker.add_job('ignores_cancellation', queue_name := 'q')")
    worker = make_worker(db_url, IgnoresCancellation, rec=rec)
    running = asyncio.create_task(worker.run())
    await rec.wait_started("ignores_cancellation")
    graceful = asyncio.create_task(worker.stop()) if graceful_first else None
    await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(worker.stop(force=True), 10)
        await asyncio.wait_for(running, 10)
        if graceful is not None:
            await asyncio.wait_for(graceful, 10)
        assert rec.calls  # cancelled, but still running: abandoned
        assert set(rec.calls) == {("cancelled", None)}
        (job,) = jobs(db)
        assert job["attempts"] == 1
        assert job["last_error"] == "the worker was stopped forcefully while the job ran"
        assert locks(db) == 0
    finally:
        rec.gate.set()  # let the abandoned task end before the event loop closes
