"""Job keys behave as one across runtimes: calls from Node and Python with the
same key in ``replace``, ``preserve_run_at`` and ``unsafe_dedupe`` modes act on the same row,
count revisions together and keep or replace ``run_at`` by the same rules, for pending,
retrying, permanently failed and running jobs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sqlalchemy_graphile import AsyncJobHelpers, JobKeyMode, JobSpec, WorkerUtils
from tests.compat._support import (
    Gate,
    Held,
    Numbered,
    RunLog,
    db_now,
    eventually,
    job_rows,
    python_worker,
)
from tests.compat.conftest import NodeGraphileWorker, NodeUtils

pytestmark = pytest.mark.compat

NODE_HOLDS_UNTIL_STOPPED = """
const { run } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const runner = await run(sg.options({
    pollInterval: 100,
    taskList: { held: sg.recorded(() => sg.command("release")) },
  }));
  await sg.stdinClosed();
  await runner.stop();
});
"""

NODE_MODES = {
    JobKeyMode.REPLACE: "replace",
    JobKeyMode.PRESERVE_RUN_AT: "preserve_run_at",
    JobKeyMode.UNSAFE_DEDUPE: "unsafe_dedupe",
}


class Adders:
    """Add ``numbered`` jobs from either runtime with the same arguments; both return the
    job id."""

    def __init__(self, python: WorkerUtils, node: NodeUtils) -> None:
        self.python = python
        self.node = node

    async def add(self, runtime: str, n: int, key: str, mode: JobKeyMode, run_at: datetime) -> int:
        if runtime == "python":
            spec = JobSpec(job_key=key, job_key_mode=mode, run_at=run_at)
            return (await self.python.add_job(Numbered(n=n), spec)).id
        row = await self.node.add_job(
            "numbered", {"n": n}, jobKey=key, jobKeyMode=NODE_MODES[mode], runAt=run_at
        )
        return int(row["id"])


def in_hours(db: psycopg.Connection, *hours: int) -> list[datetime]:
    """Database time plus each number of hours, to whole milliseconds (JavaScript's Date
    has no microseconds)."""
    now = db_now(db)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    return [now + timedelta(hours=h) for h in hours]


def keyed(db: psycopg.Connection, key: str) -> dict[str, Any]:
    (row,) = job_rows(db, "j.key = %s", key)
    return row


def n_of(row: dict[str, Any]) -> int:
    value: int = json.loads(row["payload"])["n"]
    return value


@pytest.mark.parametrize(("a", "b"), [("python", "node"), ("node", "python")])
async def test_modes_on_a_pending_job_alternate_between_runtimes(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, a: str, b: str
) -> None:
    t1, t2, t3, t4 = in_hours(db, 1, 2, 3, 4)
    async with WorkerUtils(db_url) as python_utils, node.utils(db_url) as node_utils:
        adders = Adders(python_utils, node_utils)
        job_id = await adders.add(a, 1, "UNIQUE", JobKeyMode.REPLACE, t1)
        row = keyed(db, "UNIQUE")
        assert (row["id"], row["revision"], n_of(row), row["run_at"]) == (job_id, 0, 1, t1)

        assert await adders.add(b, 2, "UNIQUE", JobKeyMode.PRESERVE_RUN_AT, t2) == job_id
        row = keyed(db, "UNIQUE")
        assert (row["revision"], n_of(row), row["run_at"]) == (1, 2, t1)

        assert await adders.add(a, 3, "UNIQUE", JobKeyMode.UNSAFE_DEDUPE, t3) == job_id
        row = keyed(db, "UNIQUE")
        assert (row["revision"], n_of(row), row["run_at"]) == (2, 2, t1)

        assert await adders.add(b, 4, "UNIQUE", JobKeyMode.REPLACE, t4) == job_id
        row = keyed(db, "UNIQUE")
        assert (row["revision"], n_of(row), row["run_at"]) == (3, 4, t4)
    assert len(job_rows(db)) == 1


@pytest.mark.parametrize(("a", "b"), [("python", "node"), ("node", "python")])
async def test_modes_on_retrying_and_dead_jobs_alternate_between_runtimes(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, a: str, b: str
) -> None:
    t1, t2 = in_hours(db, 1, 2)
    async with WorkerUtils(db_url) as python_utils, node.utils(db_url) as node_utils:
        adders = Adders(python_utils, node_utils)
        retrying = await adders.add(a, 1, "retrying", JobKeyMode.REPLACE, t1)
        dead = await adders.add(a, 1, "dead", JobKeyMode.REPLACE, t1)
        dead_dedupe = await adders.add(a, 1, "dead-dedupe", JobKeyMode.REPLACE, t1)
        # One runtime's admin calls put them in those states ...
        await python_utils.reschedule_jobs([retrying], attempts=1)
        await node_utils.call("permanentlyFailJobs", [dead, dead_dedupe], "gave up")

        # ... and the other runtime's adds treat them by the same rules.
        # Awaiting retry: updated in place; preserve_run_at does not keep run_at here.
        assert await adders.add(b, 2, "retrying", JobKeyMode.PRESERVE_RUN_AT, t2) == retrying
        row = keyed(db, "retrying")
        assert (row["revision"], row["attempts"], n_of(row), row["run_at"]) == (1, 0, 2, t2)
        assert row["last_error"] is None

        # Permanently failed: the dead job loses its key and a new job takes it.
        fresh = await adders.add(b, 2, "dead", JobKeyMode.REPLACE, t2)
        assert fresh != dead
        row = keyed(db, "dead")
        assert (row["id"], row["revision"], row["attempts"], n_of(row)) == (fresh, 0, 0, 2)
        (old,) = job_rows(db, "j.id = %s", dead)
        assert (old["key"], old["attempts"], old["last_error"]) == (None, 25, "gave up")

        # unsafe_dedupe leaves even a dead job as it is, bar the revision.
        assert await adders.add(b, 2, "dead-dedupe", JobKeyMode.UNSAFE_DEDUPE, t2) == dead_dedupe
        row = keyed(db, "dead-dedupe")
        assert (row["revision"], row["attempts"], n_of(row), row["run_at"]) == (1, 25, 1, t1)


async def test_node_replacing_a_job_our_worker_is_running_adds_a_new_job(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    gate = Gate.closed()
    (later,) = in_hours(db, 1)
    async with WorkerUtils(db_url) as python_utils, node.utils(db_url) as node_utils:
        running = (await python_utils.add_job(Held(a=1), JobSpec(job_key="k"))).id
        async with python_worker(db_url, Held, extensions=[runs, gate]):
            await eventually(runs.all, "our worker to start the job")
            row = await node_utils.add_job("held", {"a": 2}, jobKey="k", runAt=later)
            replacement = int(row["id"])
            assert replacement != running
            (old, new) = job_rows(db)
            assert (old["id"], old["key"], old["attempts"]) == (running, None, 25)
            assert old["locked_by"] is not None
            assert (new["id"], new["key"], new["revision"], new["run_at"]) == (
                replacement,
                "k",
                0,
                later,
            )
            gate.opened.set()
            await eventually(lambda: len(job_rows(db)) == 1, "the running job to complete")
    (left,) = job_rows(db)
    assert (left["id"], left["key"], left["attempts"]) == (replacement, "k", 0)


async def test_our_helpers_replacing_a_job_node_is_running_add_a_new_job(
    node: NodeGraphileWorker,
    db_url: str,
    db: psycopg.Connection,
    async_engine: AsyncEngine,
    runs: RunLog,
) -> None:
    (later,) = in_hours(db, 1)
    async with node.utils(db_url) as node_utils:
        running = int((await node_utils.add_job("held", {"a": 1}, jobKey="k"))["id"])
    async with node.start(NODE_HOLDS_UNTIL_STOPPED, db_url) as node_worker:
        await eventually(runs.all, "the Node worker to start the job")
        async with AsyncSession(async_engine) as session, session.begin():
            spec = JobSpec(job_key="k", run_at=later)
            replacement = (await AsyncJobHelpers(session).add_job(Held(a=2), spec)).id
        assert replacement != running
        (old, new) = job_rows(db)
        assert (old["id"], old["key"], old["attempts"]) == (running, None, 25)
        assert old["locked_by"].startswith("pool-")
        assert (new["id"], new["key"], new["revision"], new["run_at"]) == (
            replacement,
            "k",
            0,
            later,
        )
        await node_worker.send({"command": "release"})
        await eventually(lambda: len(job_rows(db)) == 1, "the running job to complete")
        await node_worker.finish()
    (left,) = job_rows(db)
    assert (left["id"], left["key"], left["attempts"]) == (replacement, "k", 0)
