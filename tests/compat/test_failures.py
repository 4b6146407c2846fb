"""Failures and dead workers across runtimes.

A failure on one side leaves ``attempts``, ``last_error`` and a backed-off ``run_at`` that
the other side honours: it does not run the job early, runs it once it is due, and stops at
``max_attempts``. A job whose worker died holding it is released by ``force_unlock_workers``
with that worker's pool id, whichever runtime held it and whichever unlocks it. Jobs our
stopping worker had fetched but not started are handed back at once, for Node to run; and
when Node has taken over a job from a worker of ours that only seemed dead, our late
completion leaves Node's run alone.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sqlalchemy_graphile import JobSpec, WorkerUtils
from tests.compat._support import (
    Flaky,
    Gate,
    Held,
    RunLog,
    S,
    db_now,
    eventually,
    job_row,
    job_rows,
    python_worker,
    queue_locks,
)
from tests.compat.conftest import NodeGraphileWorker, NodeUtils

pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parents[2]

NODE_RUNS_FLAKY = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
const flaky = sg.recorded(async (payload, helpers) => {
  throw new Error(`flaky failed on node, attempt ${helpers.job.attempts}`);
});
sg.main(() => runOnce(sg.options({ taskList: { flaky } })));
"""

NODE_UNLOCKS_AND_RUNS = """
const { makeWorkerUtils, runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const utils = await makeWorkerUtils(sg.options());
  try {
    await utils.forceUnlockWorkers(sg.args.workerIds);
  } finally {
    await utils.release();
  }
  await runOnce(sg.options({ taskList: { held: sg.recorded() } }));
});
"""

NODE_RUNS_HELD = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(() => runOnce(sg.options({ taskList: { held: sg.recorded() } })));
"""

NODE_TAKES_OVER = """
const { makeWorkerUtils, run } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const utils = await makeWorkerUtils(sg.options());
  try {
    await utils.forceUnlockWorkers(sg.args.workerIds);
  } finally {
    await utils.release();
  }
  const runner = await run(sg.options({
    pollInterval: 100,
    taskList: { held: sg.recorded(() => sg.command("release")) },
  }));
  await sg.stdinClosed();
  await runner.stop();
});
"""

NODE_HOLDS_FOREVER = """
const { run } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const runner = await run(sg.options({
    pollInterval: 100,
    taskList: { held: sg.recorded(() => new Promise(() => {})) },
  }));
  await runner.promise;
});
"""


def last_error(runtime: str, attempt: int) -> str:
    """What each runtime stores for :class:`Flaky`'s failure: Node the error's message, we
    the exception type and message."""
    message = f"flaky failed on {runtime}, attempt {attempt}"
    return message if runtime == "node" else f"RuntimeError: {message}"


async def run_flaky_on(runtime: str, node: NodeGraphileWorker, db_url: str) -> None:
    if runtime == "node":
        await node.execute(NODE_RUNS_FLAKY, db_url)
    else:
        await python_worker(db_url, Flaky).run_once()


async def make_due(
    runtime: str, job_id: int, now: datetime, node_utils: NodeUtils, url: str
) -> None:
    """Move the job's ``run_at`` to ``now`` with ``runtime``'s ``rescheduleJobs``."""
    if runtime == "node":
        await node_utils.call("rescheduleJobs", [job_id], {"runAt": now})
    else:
        async with WorkerUtils(url) as utils:
            await utils.reschedule_jobs([job_id], run_at=now)


@pytest.mark.parametrize(("first", "second"), [("node", "python"), ("python", "node")])
async def test_retries_alternate_between_runtimes_until_max_attempts(
    node: NodeGraphileWorker,
    db_url: str,
    db: psycopg.Connection,
    runs: RunLog,
    first: str,
    second: str,
) -> None:
    async with node.utils(db_url) as node_utils:
        added = await node_utils.add_job("flaky", {}, queueName="retries", maxAttempts=5)
        job_id = int(added["id"])
        # Start at attempt 3, so that every retry is at least e**3 s (20 s) away: plenty of
        # time to show that the other runtime leaves a job alone until it is due.
        async with WorkerUtils(db_url) as utils:
            await utils.reschedule_jobs([job_id], attempts=2)

        for attempt, runtime in enumerate([first, second, first], start=3):
            if attempt > 3:
                # The other side's failure scheduled a retry: not due, so nothing runs ...
                before = job_row(db, job_id)
                await run_flaky_on(runtime, node, db_url)
                assert job_row(db, job_id) == before
                assert len(runs.all()) == attempt - 3
                # ... until the job is made due (by the other runtime's utils).
                other = second if runtime == first else first
                await make_due(other, job_id, db_now(db), node_utils, db_url)

            start = db_now(db)
            await run_flaky_on(runtime, node, db_url)
            end = db_now(db)
            job = job_row(db, job_id)
            assert job["attempts"] == attempt
            assert job["last_error"] == last_error(runtime, attempt)
            delay = timedelta(seconds=math.exp(attempt))
            assert start + delay <= job["run_at"] <= end + delay + timedelta(milliseconds=1)
            assert job["locked_by"] is None
            assert queue_locks(db) == [("retries", None)]

    # Permanently failed: neither runtime runs it again, even when it is due.
    db.execute(f"update {S}._private_jobs set run_at = now()")
    await run_flaky_on("node", node, db_url)
    await run_flaky_on("python", node, db_url)
    assert [(r.runtime, r.attempt) for r in runs.all()] == [(first, 3), (second, 4), (first, 5)]
    (job,) = job_rows(db)
    assert (job["attempts"], job["max_attempts"]) == (5, 5)


async def test_node_unlocks_and_runs_the_jobs_of_our_dead_worker(
    node: NodeGraphileWorker,
    db_url: str,
    db: psycopg.Connection,
    runs: RunLog,
    tmp_path: Path,
) -> None:
    async with WorkerUtils(db_url) as utils:
        for a in (1, 2):
            await utils.add_job(Held(a=a), JobSpec(queue_name="held-q"))
    output = (tmp_path / "worker.log").open("wb")
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sqlalchemy_graphile", "run", "--poll-interval", "0.1"),
        *("--tasks", "tests.compat._held_tasks:HeldForever"),
        cwd=REPO,
        env={**os.environ, "DATABASE_URL": db_url, "GRAPHILE_WORKER_SCHEMA": S},
        stdout=output,
        stderr=output,
    )
    try:
        await eventually(runs.all, "our worker to start the first job")
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        output.close()

    held, waiting = job_rows(db)
    pool_id = held["locked_by"]
    assert pool_id.startswith("sgpool-"), (tmp_path / "worker.log").read_text()
    assert (held["attempts"], waiting["locked_by"]) == (1, None)
    assert queue_locks(db) == [("held-q", pool_id)]

    await node.execute(NODE_UNLOCKS_AND_RUNS, db_url, args={"workerIds": [pool_id]})
    assert job_rows(db) == []
    assert queue_locks(db) == [("held-q", None)]
    by_node = [(r.job_id, r.attempt) for r in runs.all() if r.runtime == "node"]
    assert by_node == [(held["id"], 2), (waiting["id"], 1)]  # the lost attempt counts


async def test_our_utils_unlock_the_jobs_of_a_dead_node_worker(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    async with node.utils(db_url) as node_utils:
        for a in (1, 2):
            await node_utils.add_job("held", {"a": a}, queueName="held-q")
    async with node.start(NODE_HOLDS_FOREVER, db_url) as node_worker:
        await eventually(runs.all, "the Node worker to start the first job")
        await node_worker.kill()

    held, waiting = job_rows(db)
    pool_id = held["locked_by"]
    assert pool_id.startswith("pool-")
    assert queue_locks(db) == [("held-q", pool_id)]

    gate = Gate.closed()
    gate.opened.set()
    async with WorkerUtils(db_url) as utils:
        await utils.force_unlock_workers(["pool-0123456789abcdef01"])  # somebody else
        assert job_row(db, held["id"])["locked_by"] == pool_id
        await utils.force_unlock_workers([pool_id])
    unlocked: dict[str, Any] = job_row(db, held["id"])
    assert (unlocked["locked_by"], unlocked["locked_at"], unlocked["attempts"]) == (None, None, 1)
    assert queue_locks(db) == [("held-q", None)]

    await python_worker(db_url, Held, extensions=[runs, gate]).run_once()
    assert job_rows(db) == []
    by_python = [(r.job_id, r.attempt) for r in runs.all() if r.runtime == "python"]
    assert by_python == [(held["id"], 2), (waiting["id"], 1)]


async def test_jobs_our_stopping_worker_had_fetched_go_to_node_with_their_attempt_back(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    async with WorkerUtils(db_url) as utils:
        for a in range(1, 6):
            await utils.add_job(Held(a=a))
    gate = Gate.closed()
    worker = python_worker(db_url, Held, extensions=[runs, gate], local_queue_size=10)
    # The running job may finish once the shutdown has begun, so no cached job starts.
    worker.events.on("pool:gracefulShutdown", lambda _event: gate.opened.set())
    async with worker:
        (first,) = await eventually(runs.all, "our worker to start a job")
        assert [row["locked_by"] for row in job_rows(db)] == [worker.pool_id] * 5
        await worker.stop()

    returned = job_rows(db)
    assert [(r["locked_by"], r["attempts"]) for r in returned] == [(None, 0)] * 4
    await node.execute(NODE_RUNS_HELD, db_url)
    assert job_rows(db) == []
    by_node = sorted((r.job_id, r.attempt) for r in runs.all() if r.runtime == "node")
    assert by_node == [(r["id"], 1) for r in returned]
    assert first.job_id not in {r["id"] for r in returned}


async def test_our_late_completion_leaves_a_job_node_took_over_alone(
    node: NodeGraphileWorker,
    db_url: str,
    db: psycopg.Connection,
    runs: RunLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Our worker stalls on a job, is taken for dead and unlocked, and Node runs the job
    again. When our run ends after all, its completion must not delete the job Node holds."""
    async with WorkerUtils(db_url) as utils:
        job_id = (await utils.add_job(Held(a=1))).id
    gate = Gate.closed()
    fenced = asyncio.Event()
    worker = python_worker(db_url, Held, extensions=[runs, gate])
    worker.events.on("job:fenced", lambda _event: fenced.set())
    async with worker:
        await eventually(runs.all, "our worker to start the job")
        args = {"workerIds": [worker.pool_id]}
        async with node.start(NODE_TAKES_OVER, db_url, args=args) as node_worker:
            await eventually(lambda: len(runs.all()) == 2, "Node to start the job again")
            node_pool = job_row(db, job_id)["locked_by"]
            assert node_pool.startswith("pool-")

            gate.opened.set()
            async with asyncio.timeout(30):
                await fenced.wait()
            held = job_row(db, job_id)
            assert (held["locked_by"], held["attempts"]) == (node_pool, 2)
            assert any("no longer locked by this worker" in r.getMessage() for r in caplog.records)

            await node_worker.send({"command": "release"})
            await eventually(lambda: not job_rows(db), "Node to complete the job")
            await node_worker.finish()
    assert [(r.runtime, r.attempt) for r in runs.all()] == [("python", 1), ("node", 2)]
