"""Job flags are stored in one format, ``{"flag": true, ...}``, whichever runtime adds the
job, and each runtime's forbidden flags skip the other's flagged jobs."""

from __future__ import annotations

import json

import psycopg
import pytest

from sqlalchemy_graphile import JobSpec, WorkerUtils
from tests.compat._support import Numbered, RunLog, S, job_rows, python_worker
from tests.compat.conftest import NodeGraphileWorker

pytestmark = pytest.mark.compat

NODE_RUNS_ALL_BUT = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(() => runOnce(sg.options({
  forbiddenFlags: sg.args.forbidden,
  taskList: { numbered: sg.recorded() },
})));
"""

#: (n, flags, which runtime adds the job)
JOBS: list[tuple[int, list[str] | None, str]] = [
    (1, ["a", "b"], "python"),
    (2, ["a", "b"], "node"),
    (3, ["c"], "python"),
    (4, ["d"], "node"),
    (5, None, "python"),
    (6, None, "node"),
    (7, [], "python"),
    (8, [], "node"),
]


async def test_flags_from_either_runtime_are_honoured_by_the_other(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    async with WorkerUtils(db_url) as python_utils, node.utils(db_url) as node_utils:
        for n, flags, adder in JOBS:
            if adder == "python":
                await python_utils.add_job(Numbered(n=n), JobSpec(flags=flags))
            else:
                await node_utils.add_job("numbered", {"n": n}, flags=flags)

    stored = {json.loads(row["payload"])["n"]: row["flags"] for row in job_rows(db)}
    assert stored == {
        1: {"a": True, "b": True},
        2: {"a": True, "b": True},
        3: {"c": True},
        4: {"d": True},
        5: None,
        6: None,
        7: None,  # an empty list stores no flags, as in Node
        8: None,
    }
    view = db.execute(f"select flags::text from {S}.jobs order by id").fetchall()
    assert view[0] == view[1] == ('{"a": true, "b": true}',)

    def ran() -> list[tuple[str, int]]:
        return [(r.runtime, Numbered.model_validate_json(r.payload).n) for r in runs.all()]

    # Node refuses b and d: it runs the unflagged jobs and Python's c.
    await node.execute(NODE_RUNS_ALL_BUT, db_url, args={"forbidden": ["b", "d"]})
    assert sorted(ran()) == [("node", n) for n in (3, 5, 6, 7, 8)]

    # We refuse a: of the rest we run Node's d only.
    await python_worker(db_url, Numbered, forbidden_flags=["a"]).run_once()
    assert ran()[-1:] == [("python", 4)]

    left = [(json.loads(r["payload"])["n"], r["attempts"], r["flags"]) for r in job_rows(db)]
    assert left == [(1, 0, {"a": True, "b": True}), (2, 0, {"a": True, "b": True})]
