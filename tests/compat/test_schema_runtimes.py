"""Whoever installed the schema, both runtimes work on it: Node migrates nothing after
``alembic upgrade head`` (and warns about our non-breaking revision 20), our worker and
helpers run on a schema Node installed and add revision 20 to it, we adopt a schema that the
Rust port moved on to its revision 20, and both refuse a breaking revision."""

from __future__ import annotations

import logging

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, pool
from sqlalchemy.orm import Session

from sqlalchemy_graphile import JobHelpers, SchemaTooNewError, WorkerUtils
from sqlalchemy_graphile.migrations import uninstall_recovery
from tests._rust_revision_20 import rust_revision_20
from tests.compat._support import (
    Numbered,
    RunLog,
    S,
    create_runs_table,
    python_worker,
)
from tests.compat.conftest import NodeGraphileWorker
from tests.compat.test_schema_interop import ledger
from tests.integration.test_alembic import alembic_config, version_rows

pytestmark = pytest.mark.compat

NODE_RUN_ONCE = """
const { makeWorkerUtils, runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  const utils = await makeWorkerUtils(sg.options());
  try {
    for (const n of sg.args.add) await utils.addJob("numbered", { n });
  } finally {
    await utils.release();
  }
  await runOnce(sg.options({ taskList: { numbered: sg.recorded() } }));
  return { done: true };
});
"""

NODE_REFUSES = """
const { runOnce } = require("graphile-worker");
const sg = require("sg_compat");
sg.main(async () => {
  try {
    await runOnce(sg.options({ taskList: { numbered: sg.recorded() } }));
    return { ran: true };
  } catch (error) {
    return { error: error.message };
  }
});
"""


def numbers_run_by(log: RunLog, runtime: str) -> list[int]:
    return sorted(
        Numbered.model_validate_json(r.payload).n for r in log.all() if r.runtime == runtime
    )


def test_node_migrates_nothing_after_alembic_upgrade(
    node: NodeGraphileWorker, empty_db_url: str
) -> None:
    command.upgrade(alembic_config(empty_db_url), "head")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        before = ledger(conn)
        assert [row[0] for row in before] == list(range(1, 21))
        result = node.cli("--schema-only", db_url=empty_db_url)
        assert "Schema updated" in result.stdout
        assert "Database is using Graphile Worker schema revision 20" in result.stderr
        assert ledger(conn) == before
        assert version_rows(conn) == ["gw0020"]


async def test_our_worker_and_helpers_run_on_a_schema_node_installed(
    node: NodeGraphileWorker, empty_db_url: str
) -> None:
    node.cli("--schema-only", db_url=empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        node_ledger = ledger(conn)
        create_runs_table(conn)
    log = RunLog(empty_db_url)

    engine = create_engine(
        empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with Session(engine) as session, session.begin():
            JobHelpers(session).add_job(Numbered(n=1))
    finally:
        engine.dispose()
    async with WorkerUtils(empty_db_url) as utils:
        await utils.add_raw_job("numbered", {"n": 2})
        assert await utils.migrate() is True  # adopted, and revision 20 added
    await python_worker(empty_db_url, Numbered, extensions=[log]).run_once()
    assert numbers_run_by(log, "python") == [1, 2]

    # And Node keeps working on it after us.
    await node.execute(NODE_RUN_ONCE, empty_db_url, args={"add": [3, 4]})
    assert numbers_run_by(log, "node") == [3, 4]
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert ledger(conn)[:-1] == node_ledger
        assert ledger(conn)[-1][0] == 20
        assert version_rows(conn) == []  # our helpers and worker never touch Alembic
        assert conn.execute(f"select count(*) from {S}._private_jobs").fetchone() == (0,)


async def test_a_rust_ledger_at_revision_20_is_accepted_by_both(
    node: NodeGraphileWorker,
    db_url: str,
    db: psycopg.Connection,
    runs: RunLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = create_engine(
        db_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as connection:
            uninstall_recovery(connection, S)
    finally:
        engine.dispose()
    db.execute(rust_revision_20())
    db.execute(f"select {S}.worker_heartbeat('graphile_worker_0123456789abcdef01')")
    rust_ledger = ledger(db)

    async with WorkerUtils(db_url) as utils:
        await utils.add_job(Numbered(n=1))
        assert await utils.migrate() is False
    with caplog.at_level(logging.WARNING, logger="sqlalchemy_graphile"):
        await python_worker(db_url, Numbered).run_once()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert not any("newer than" in w for w in warnings), warnings
    assert numbers_run_by(runs, "python") == [1]

    async with node.start(NODE_RUN_ONCE, db_url, args={"add": [2]}) as process:
        await process.finish()
    assert "Database is using Graphile Worker schema revision 20" in process.stderr
    assert numbers_run_by(runs, "node") == [2]

    node.cli("--schema-only", db_url=db_url)
    assert ledger(db) == rust_ledger
    assert db.execute(f"select count(*) from {S}._private_workers").fetchone() == (1,)


async def test_a_breaking_revision_20_stops_both(
    node: NodeGraphileWorker, db_url: str, db: psycopg.Connection, runs: RunLog
) -> None:
    db.execute(f"update {S}.migrations set breaking = true where id = 20")
    db.execute(f"""select {S}.add_job('numbered', '{{"n": 1}}')""")

    with pytest.raises(SchemaTooNewError) as raised:
        await python_worker(db_url, Numbered).run_once()
    assert (raised.value.latest_breaking, raised.value.supported) == (20, 19)

    # Node sets exit status 57 for this, as our command line does.
    (outcome,) = await node.execute(NODE_REFUSES, db_url, status=57)
    assert "includes breaking migration 20" in outcome["error"]
    assert runs.all() == []
    assert db.execute(f"select attempts from {S}._private_jobs").fetchall() == [(0,)]
