"""Payloads cross runtimes intact: a job added by :class:`JobHelpers` in a committed
transaction runs on Node with the payload Node's task expects, and a job added by Node's
``addJob`` runs on our worker, validated into the task model.

The payload holds the awkward cases: astral emoji and ZWJ sequences, right-to-left text
with direction marks, decomposed characters (never normalised), JSON escapes, nesting,
integers at JavaScript's safe limits, floats at double's extremes, booleans and nulls.
Integers beyond 2**53 - 1 are stored exactly, but JavaScript reads them as doubles.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import psycopg
import pytest
from pydantic import BaseModel, Field
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from sqlalchemy_graphile import JobHelpers, JobSpec, Task, WorkerContext
from tests.compat._support import RunLog, job_rows, python_worker, run_log
from tests.compat.conftest import NodeGraphileWorker

pytestmark = pytest.mark.compat

MAX_SAFE_INTEGER = 2**53 - 1

PAYLOAD: dict[str, Any] = {
    "emoji": "Grüße 👋🏽 👩‍👩‍👧‍👦 🇫🇷 𝄞 €",
    "rtl": "\u05e9\u05dc\u05d5\u05dd \u200f(עברית)\u200e والعربية \u202bembedded\u202c",
    "combining": "e\u0301 a\u0308 o\u0302\u0323 \u0928\u093f \uac00",
    "escapes": 'quote " backslash \\ slash / newline \n tab \t bell \u0007 del \u007f',
    "nested": {
        "deep": [1, [2, [3, {"leaf": [True, False, None]}]]],
        "empty_object": {},
        "empty_list": [],
        "key with spaces & ünïcode ✓": "value",
    },
    "max_safe": MAX_SAFE_INTEGER,
    "min_safe": -MAX_SAFE_INTEGER,
    "zero": 0,
    "floats": [0.1, -2.5e-300, 1.7976931348623157e308, 5e-324, 3.141592653589793, 1e21],
    "yes": True,
    "no": False,
    "nothing": None,
}


class Nested(BaseModel):
    deep: list[Any]
    empty_object: dict[str, Any]
    empty_list: list[Any]
    spaced: str = Field(alias="key with spaces & ünïcode ✓")


class Shapes(Task):
    """The task model of :data:`PAYLOAD`; its run records itself."""

    IDENTIFIER: ClassVar[str] = "payload_shapes"
    emoji: str
    rtl: str
    combining: str
    escapes: str
    nested: Nested
    max_safe: int
    min_safe: int
    zero: int
    floats: list[float]
    yes: bool
    no: bool
    nothing: None
    beyond_js: int | None = None

    async def run(self, ctx: WorkerContext) -> None:
        async with run_log(ctx).record(ctx, self.model_dump_json(by_alias=True)):
            pass


NODE_RUNS_SHAPES = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const seen = [];
  const payload_shapes = sg.recorded(async (payload, helpers) => {
    seen.push({
      id: helpers.job.id,
      queue: await helpers.getQueueName(),
      priority: helpers.job.priority,
      beyondJsIsSafe: Number.isSafeInteger(payload.beyond_js),
      combiningLength: payload.combining.length,
    });
  });
  await runOnce(sg.options({ taskList: { payload_shapes } }));
  return seen;
});
"""

NODE_ADDS_SHAPES = """
const { makeWorkerUtils } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const utils = await makeWorkerUtils(sg.options());
  try {
    const job = await utils.addJob("payload_shapes", sg.args, { queueName: "from-node" });
    return { id: job.id };
  } finally {
    await utils.release();
  }
});
"""


def test_payload_model_matches_the_payload() -> None:
    dumped = Shapes.model_validate(PAYLOAD).model_dump(by_alias=True, exclude={"beyond_js"})
    assert dumped == PAYLOAD


async def test_a_job_added_in_a_committed_transaction_runs_on_node(
    node: NodeGraphileWorker,
    db_url: str,
    sync_engine: Engine,
    db: psycopg.Connection,
    runs: RunLog,
) -> None:
    beyond = 2**63 - 1
    task = Shapes.model_validate({**PAYLOAD, "beyond_js": beyond})
    with Session(sync_engine) as session, session.begin():
        session.execute(text("create table orders (id int primary key)"))
        session.execute(text("insert into orders values (1)"))
        job = JobHelpers(session).add_job(task, JobSpec(queue_name="from-python", priority=3))
    with Session(sync_engine) as session, session.begin():
        JobHelpers(session).add_job(Shapes.model_validate({**PAYLOAD, "zero": 1}))
        session.rollback()  # never committed: Node must not see it

    (stored,) = job_rows(db)
    assert stored["id"] == job.id
    assert f'"beyond_js":{beyond}' in stored["payload"]  # the exact digits are stored

    (seen,) = await node.execute(NODE_RUNS_SHAPES, db_url)
    assert seen == [
        {
            "id": str(job.id),
            "queue": "from-python",
            "priority": 3,
            "beyondJsIsSafe": False,
            "combiningLength": len(PAYLOAD["combining"]),
        }
    ]
    (run,) = runs.all()
    assert (run.runtime, run.job_id, run.attempt) == ("node", job.id, 1)
    node_view = json.loads(run.payload)
    # JavaScript numbers are doubles: Node saw the nearest one, not the stored integer.
    rounded = node_view.pop("beyond_js")
    assert rounded != beyond
    assert float(rounded) == float(beyond)
    assert node_view == PAYLOAD
    assert job_rows(db) == []


async def test_a_job_added_by_node_runs_on_our_worker(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    (added,) = await node.execute(NODE_ADDS_SHAPES, db_url, args=PAYLOAD)
    (stored,) = job_rows(db)
    assert str(stored["id"]) == added["id"]
    assert json.loads(stored["payload"]) == PAYLOAD

    await python_worker(db_url, Shapes).run_once()
    (run,) = runs.all()
    assert (run.runtime, run.job_id, run.attempt) == ("python", stored["id"], 1)
    received = Shapes.model_validate_json(run.payload)
    assert received == Shapes.model_validate(PAYLOAD)
    assert received.combining == PAYLOAD["combining"]  # not normalised to composed forms
    assert received.max_safe == MAX_SAFE_INTEGER
    assert type(received.floats[-1]) is float
    assert job_rows(db) == []


async def test_a_node_payload_our_model_rejects_fails_for_good(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    wrong = {**PAYLOAD, "emoji": None, "max_safe": "many"}
    (added,) = await node.execute(NODE_ADDS_SHAPES, db_url, args=wrong)
    await python_worker(db_url, Shapes).run_once()

    # No retry could fit the payload to the model, so the attempts are used up at once.
    (job,) = job_rows(db)
    assert (job["attempts"], job["max_attempts"], job["locked_by"]) == (25, 25, None)
    prefix = f"PayloadValidationError: the payload of job {added['id']} does not fit Shapes: "
    assert job["last_error"].startswith(prefix)
    assert "emoji: " in job["last_error"]
    assert "max_safe: " in job["last_error"]
    assert runs.all() == []
