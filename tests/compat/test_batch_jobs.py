"""Batch jobs across runtimes: array payloads added under one job key by both sides merge
into one job; whichever runtime runs it first keeps only the items that failed there, and the
other runtime finishes them."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sqlalchemy_graphile import AsyncJobHelpers, BatchTask, JobSpec, WorkerContext
from tests.compat._support import Line, RunLog, S, job_rows, python_worker
from tests.compat.conftest import NodeGraphileWorker

pytestmark = pytest.mark.compat

KEY = "lines"

NODE_RUNS_LINES = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
// A rejected promise per failed item, marked as handled: Graphile Worker settles them
// after the task returns (and after sg.recorded has stamped the run's end).
function outcome(item) {
  if (item.fail_on !== "node") return null;
  const failed = Promise.reject(new Error(`line ${item.n} failed on node`));
  failed.catch(() => {});
  return failed;
}
sg.main(async () => {
  await runOnce(sg.options({
    taskList: { batch_lines: sg.recorded(async (payload) => payload.map(outcome)) },
  }));
});
"""


NODE_RETURNS_TOO_FEW = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(() => runOnce(sg.options({
  taskList: { batch_short: sg.recorded(async (payload) => payload.slice(1).map(() => null)) },
})));
"""


class Short(BatchTask):
    """Reports one outcome fewer than it was given items."""

    IDENTIFIER: ClassVar[str] = "batch_short"
    n: int

    @classmethod
    async def run_batch(cls, items: list[Self], ctx: WorkerContext) -> list[None]:
        return [None for _ in items[1:]]


def item(n: int, fail_on: str | None) -> dict[str, Any]:
    return {"n": n, "fail_on": fail_on}


async def add_from_python(engine: AsyncEngine, *items: dict[str, Any]) -> None:
    async with AsyncSession(engine) as session, session.begin():
        lines = [Line.model_validate(i) for i in items]
        await AsyncJobHelpers(session).add_batch_job(lines, JobSpec(job_key=KEY))


async def run_on(runtime: str, node: NodeGraphileWorker, db_url: str) -> None:
    if runtime == "node":
        await node.execute(NODE_RUNS_LINES, db_url)
    else:
        await python_worker(db_url, Line).run_once()


def items_of(payload: str) -> list[int]:
    return [entry["n"] for entry in json.loads(payload)]


@pytest.mark.parametrize(("first", "second"), [("node", "python"), ("python", "node")])
async def test_merged_batch_fails_partly_on_one_side_and_finishes_on_the_other(
    node: NodeGraphileWorker,
    db_url: str,
    db: psycopg.Connection,
    async_engine: AsyncEngine,
    runs: RunLog,
    first: str,
    second: str,
) -> None:
    async with node.utils(db_url) as utils:
        await add_from_python(async_engine, item(1, first), item(2, None))
        await utils.add_job("batch_lines", [item(3, None), item(4, first)], jobKey=KEY)
        await add_from_python(async_engine, item(5, second))

    (job,) = job_rows(db)
    expected = [item(1, first), item(2, None), item(3, None), item(4, first), item(5, second)]
    assert json.loads(job["payload"]) == expected
    assert (job["key"], job["revision"], job["attempts"]) == (KEY, 2, 0)

    await run_on(first, node, db_url)
    (job,) = job_rows(db)
    assert json.loads(job["payload"]) == [item(1, first), item(4, first)]
    assert job["attempts"] == 1
    assert job["last_error"] == (
        f"Batch failures:\nline 1 failed on {first}\nline 4 failed on {first}"
    )
    assert job["locked_by"] is None

    # Not due yet for the other side; once it is, it runs just the two failed items.
    await run_on(second, node, db_url)
    assert len(runs.all()) == 1
    db.execute(f"update {S}._private_jobs set run_at = now()")
    await run_on(second, node, db_url)
    assert job_rows(db) == []

    first_run, second_run = runs.all()
    assert (first_run.runtime, first_run.attempt) == (first, 1)
    assert items_of(first_run.payload) == [1, 2, 3, 4, 5]
    assert (second_run.runtime, second_run.attempt, second_run.job_id) == (second, 2, job["id"])
    assert items_of(second_run.payload) == [1, 4]


async def test_a_result_of_the_wrong_length_is_success_on_node_and_failure_here(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    async with node.utils(db_url) as utils:
        await utils.add_job("batch_short", [{"n": 1}, {"n": 2}])
        await node.execute(NODE_RETURNS_TOO_FEW, db_url)
        # Node counts it as a full success: the job is gone, and both items with it.
        assert job_rows(db) == []
        await utils.add_job("batch_short", [{"n": 1}, {"n": 2}])

    await python_worker(db_url, Short).run_once()
    # We keep every item for a retry and say why.
    (job,) = job_rows(db)
    assert (job["attempts"], items_of(job["payload"])) == (1, [1, 2])
    assert job["last_error"] == (
        "InvalidTaskError: Short.run_batch returned 1 outcomes for 2 items; "
        "the whole batch is kept for a retry"
    )
