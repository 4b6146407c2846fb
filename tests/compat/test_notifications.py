"""``NOTIFY "jobs:insert"`` wakes workers of the other runtime: an idle worker that would not
poll for a minute picks up a job the other side added within seconds."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import JobHelpers, WorkerEvent, WorkerEvents
from tests.compat._support import Numbered, RunLog, eventually, python_worker
from tests.compat.conftest import NodeGraphileWorker

pytestmark = pytest.mark.compat

#: Long enough that a job run within WAKE_UP seconds was not found by polling.
POLL_SECONDS = 60
WAKE_UP = 10.0

NODE_WAITS_IDLE = """
const { run } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const runner = await run(sg.options({
    pollInterval: sg.args.pollMs,
    taskList: { numbered: sg.recorded() },
  }));
  let listening = false;
  let idle = false;
  const report = () => listening && idle && sg.emit({ idle: true });
  runner.events.on("pool:listen:success", () => { listening = true; report(); });
  runner.events.once("worker:getJob:empty", () => { idle = true; report(); });
  await sg.stdinClosed();
  await runner.stop();
});
"""


async def test_an_idle_node_worker_wakes_up_for_our_commit(
    node: NodeGraphileWorker, db_url: str, sync_engine: Engine, runs: RunLog
) -> None:
    args = {"pollMs": POLL_SECONDS * 1000}
    async with node.start(NODE_WAITS_IDLE, db_url, args=args) as node_worker:
        await node_worker.message(lambda m: m.get("idle") is True, "the Node worker to idle")
        with Session(sync_engine) as session, session.begin():
            JobHelpers(session).add_job(Numbered(n=1))
        await eventually(runs.finished, "Node to run the job", within=WAKE_UP)
        await node_worker.finish()
    assert [(r.runtime, r.payload) for r in runs.all()] == [("node", '{"n":1}')]


async def test_our_idle_worker_wakes_up_for_a_node_add(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    events = WorkerEvents()
    seen: set[str] = set()
    ready = asyncio.Event()

    def on(event: WorkerEvent) -> None:
        seen.add(event.name)
        if {"pool:listen:success", "worker:getJob:empty"} <= seen:
            ready.set()

    events.on_any(on)
    worker = python_worker(db_url, Numbered, poll_interval=POLL_SECONDS, events=events)
    async with node.utils(db_url) as node_utils, worker:
        async with asyncio.timeout(WAKE_UP):
            await ready.wait()
        await node_utils.add_job("numbered", {"n": 2})
        await eventually(runs.finished, "our worker to run the job", within=WAKE_UP)
    assert [(r.runtime, r.payload) for r in runs.all()] == [("python", '{"n":2}')]
