"""Crash recovery next to Graphile Worker 0.17, which never registers in
``_private_workers``: our sweep leaves a long job a live Node worker holds alone (it falls
to Node's four-hour sweep), and only the explicit orphan rule takes it, with the documented
hazard of a second run while Node still runs it."""

from __future__ import annotations

import psycopg
import pytest

from sqlalchemy_graphile import WorkerUtils
from tests.compat._support import Gate, Held, RunLog, S, eventually, job_row, python_worker
from tests.compat.conftest import NodeGraphileWorker
from tests.compat.test_failures import NODE_HOLDS_FOREVER

pytestmark = [pytest.mark.compat, pytest.mark.timeout(120)]


async def test_a_long_job_of_a_live_node_worker_is_not_recovered_by_default(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    async with node.utils(db_url) as node_utils:
        job_id = int((await node_utils.add_job("held", {"a": 1}, queueName="long"))["id"])
    async with node.start(NODE_HOLDS_FOREVER, db_url) as node_worker:
        await eventually(runs.all, "the Node worker to start the job")
        node_pool = job_row(db, job_id)["locked_by"]
        assert node_pool.startswith("pool-")
        # The job has run for an hour, as far as any threshold can tell.
        db.execute(
            f"update {S}._private_jobs set locked_at = now() - interval '1 hour'"
            f"; update {S}._private_job_queues set locked_at = now() - interval '1 hour'"
        )

        # Our workers sweep with a one-second threshold, and leave it alone.
        gate = Gate.closed()
        gate.opened.set()
        worker = python_worker(
            db_url,
            Held,
            extensions=[runs, gate],
            heartbeat_interval=0.2,
            sweep_threshold=1.0,
            sweep_interval=0.2,
        )
        async with worker, WorkerUtils(db_url) as utils:
            for _ in range(3):
                result = await utils.sweep_stale_workers(sweep_threshold=1)
                assert (result.swept, result.dead_workers, result.orphans) == (True, (), ())
            assert job_row(db, job_id)["locked_by"] == node_pool
            assert db.execute(f"select locked_by from {S}._private_job_queues").fetchall() == [
                (node_pool,)
            ]
            assert [r.runtime for r in runs.all()] == ["node"]

            # The Rust port's orphan rule, opted into, takes it while Node still runs it.
            taken = await utils.sweep_stale_workers(
                sweep_threshold=1, recover_unregistered_locks=True
            )
            assert taken.orphans == (node_pool,)
            assert [job.id for job in taken.jobs] == [job_id]
            await eventually(lambda: len(runs.all()) == 2, "our worker to run the job again")
        assert node_worker.running  # Node still runs its copy
        assert [r.runtime for r in runs.all()] == ["node", "python"]
        await node_worker.kill()
