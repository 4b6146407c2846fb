"""The dashboard on a schema Node installed, with jobs Node added: it counts and shows them,
and a job it retries is run by a Node worker, which sees the effect it expects."""

from __future__ import annotations

import psycopg
import pytest

from sqlalchemy_graphile.dashboard import dashboard_app
from tests._dashboard_support import client, db_counts
from tests.compat._support import RunLog, create_runs_table
from tests.compat.conftest import NodeGraphileWorker
from tests.compat.test_schema_runtimes import NODE_RUN_ONCE, numbers_run_by

pytestmark = pytest.mark.compat


async def test_dashboard_reads_and_retries_on_a_node_schema(
    node: NodeGraphileWorker, empty_db_url: str
) -> None:
    node.cli("--schema-only", db_url=empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        create_runs_table(conn)
    log = RunLog(empty_db_url)
    async with node.utils(empty_db_url) as utils:
        job = await utils.call("addJob", "numbered", {"n": 7}, {"queueName": "numbers"})
        await utils.call("permanentlyFailJobs", [job["id"]], "failed in Node")
        await utils.call("addJob", "numbered", {"n": 8}, {"runAt": "2999-01-01T00:00:00Z"})
    failed_id = int(job["id"])

    app = dashboard_app(empty_db_url, sample_interval=3600)
    try:
        async with client(app) as http:
            overview = (await http.get("/api/overview")).json()
            with psycopg.connect(empty_db_url, autocommit=True) as conn:
                expected = db_counts(conn)
            assert {s: overview["total"][s] for s in expected} == expected
            assert expected["failed"] == 1
            shown = (await http.get(f"/api/jobs/{failed_id}")).json()
            assert shown["last_error"] == "failed in Node"
            assert shown["queue_name"] == "numbers"
            token = (await http.get("/api/session")).json()["csrf_token"]
            retried = await http.post(
                "/api/actions/retry", json={"ids": [failed_id]}, headers={"X-CSRF-Token": token}
            )
            assert retried.json()["done"] == [failed_id]
    finally:
        await app.close()

    await node.execute(NODE_RUN_ONCE, empty_db_url, args={"add": []})
    assert numbers_run_by(log, "node") == [7]
