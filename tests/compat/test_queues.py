"""Named queues, priorities and ``run_at`` mean the same to both runtimes: a queue worked by a
Node and a Python worker at once never runs two of its jobs at the same time (also when our
worker fetches in batches into its local queue), and either runtime runs jobs from both in
``priority``, then ``run_at`` order, leaving future jobs."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from sqlalchemy_graphile import JobSpec, WorkerUtils
from tests.compat._support import (
    Numbered,
    PythonStep,
    RunLog,
    SharedStep,
    db_now,
    eventually,
    job_rows,
    python_worker,
    queue_locks,
)
from tests.compat.conftest import NodeGraphileWorker

pytestmark = pytest.mark.compat

NODE_WORKS_THE_QUEUE = """
const { run } = require("graphile-worker");
const sg = require("sg_compat");
const step = sg.recorded(() => sg.sleep(50));
sg.main(async () => {
  const runner = await run(sg.options({
    concurrency: 2,
    pollInterval: 100,
    taskList: { node_step: step, shared_step: step },
  }));
  sg.emit({ ready: true });
  await sg.stdinClosed();
  await runner.stop();
});
"""

NODE_RUNS_NUMBERED = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(() => runOnce(sg.options({ concurrency: 1, taskList: { numbered: sg.recorded() } })));
"""

#: (task, which runtime adds it), in the order they are added; every third job can run
#: only on Node, every third only on Python, and the rest on either.
QUEUE_JOBS = [
    (task, adder)
    for _ in range(2)
    for task, adder in [
        ("node_step", "python"),
        ("py_step", "node"),
        ("shared_step", "python"),
        ("py_step", "python"),
        ("shared_step", "node"),
        ("node_step", "node"),
    ]
]


@pytest.mark.parametrize(
    "batching",
    [
        pytest.param({}, id="direct"),
        pytest.param(
            {"local_queue_size": 10, "complete_job_batch_delay": 0, "fail_job_batch_delay": 0},
            id="local-queue",
        ),
    ],
)
async def test_a_queue_worked_by_both_runtimes_runs_one_job_at_a_time(
    node: NodeGraphileWorker,
    db_url: str,
    db: psycopg.Connection,
    runs: RunLog,
    batching: dict[str, Any],
) -> None:
    added: dict[int, str] = {}

    async def add(jobs: list[tuple[str, str]], start: int) -> None:
        for n, (task, adder) in enumerate(jobs, start):
            if adder == "python":
                job = await python_utils.add_raw_job(task, {"n": n}, JobSpec(queue_name="serial"))
                added[job.id] = task
            else:
                row = await node_utils.add_job(task, {"n": n}, queueName="serial")
                added[int(row["id"])] = task

    half = len(QUEUE_JOBS) // 2
    async with WorkerUtils(db_url) as python_utils, node.utils(db_url) as node_utils:
        await add(QUEUE_JOBS[:half], 0)
        async with (
            node.start(NODE_WORKS_THE_QUEUE, db_url) as node_worker,
            python_worker(db_url, PythonStep, SharedStep, concurrency=2, **batching),
        ):
            await node_worker.message(lambda m: m.get("ready") is True, "the Node worker to start")
            await add(QUEUE_JOBS[half:], half)
            await eventually(
                lambda: len(runs.finished()) == len(QUEUE_JOBS) and not job_rows(db),
                "every job of the queue to run",
            )
            await node_worker.finish()

    done = runs.all()
    assert sorted(run.job_id for run in done) == sorted(added)
    for earlier, later in itertools.pairwise(done):
        assert earlier.finished_at is not None
        assert later.started_at >= earlier.finished_at, (earlier, later)
    runtime_of = {run.job_id: run.runtime for run in done}
    assert {runtime_of[i] for i, task in added.items() if task == "node_step"} == {"node"}
    assert {runtime_of[i] for i, task in added.items() if task == "py_step"} == {"python"}
    assert queue_locks(db) == [("serial", None)]


#: (n, priority, minutes from now for run_at, which runtime adds it)
ORDER_JOBS = [
    (1, 0, -50, "python"),
    (2, 0, -40, "node"),
    (3, -5, -10, "node"),
    (4, -5, -20, "python"),
    (5, 10, -59, "node"),
    (6, 0, -45, "python"),
    (7, -10, 60, "node"),  # not due
    (8, -10, 60, "python"),  # not due
]


@pytest.mark.parametrize("runner", ["node", "python"])
async def test_priority_then_run_at_decide_the_order_on_either_runtime(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog, runner: str
) -> None:
    now = db_now(db)
    async with WorkerUtils(db_url) as python_utils, node.utils(db_url) as node_utils:
        for n, priority, minutes, adder in ORDER_JOBS:
            run_at = now + timedelta(minutes=minutes)
            if adder == "python":
                spec = JobSpec(priority=priority, run_at=run_at)
                await python_utils.add_job(Numbered(n=n), spec)
            else:
                await node_utils.add_job("numbered", {"n": n}, priority=priority, runAt=run_at)

    if runner == "node":
        await node.execute(NODE_RUNS_NUMBERED, db_url)
    else:
        await python_worker(db_url, Numbered).run_once()

    order = [Numbered.model_validate_json(run.payload).n for run in runs.all()]
    assert order == [4, 3, 1, 6, 2, 5]
    assert {run.runtime for run in runs.all()} == {runner}
    left = [(json.loads(row["payload"])["n"], row["attempts"]) for row in job_rows(db)]
    assert sorted(left) == [(7, 0), (8, 0)]
