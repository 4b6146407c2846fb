"""Our schema and Graphile Worker's (Node 0.17) are interchangeable.

(a) Node finds a schema we installed (revision 19 plus the non-breaking revision 20) usable
and migrates nothing; (b) we adopt a schema Node installed, jobs and all, and add revision 20
to it; (c) Node's install has our revision-19 catalog, object for object.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, pool

from sqlalchemy_graphile import quote_identifier
from sqlalchemy_graphile.migrations import install
from tests._catalog import describe_schema
from tests.compat.conftest import NodeGraphileWorker
from tests.integration.test_alembic import alembic_config, version_rows
from tests.integration.test_catalog import EXPECTED, EXPECTED_REVISION_19

pytestmark = [pytest.mark.compat, pytest.mark.timeout(600)]

S = "graphile_worker"

ADD_JOBS_WITH_NODE = """
const { makeWorkerUtils } = require("graphile-worker");
(async () => {
  const utils = await makeWorkerUtils({ connectionString: process.env.DATABASE_URL });
  try {
    const ids = [];
    ids.push((await utils.addJob("node_plain", { n: 1 })).id);
    ids.push((await utils.addJob("node_queued", { n: 2 }, { queueName: "q", jobKey: "k" })).id);
    const runAt = new Date(Date.now() + 3600 * 1000);
    ids.push((await utils.addJob("node_later", [{ n: 3 }], { runAt, flags: ["f"] })).id);
    console.log(JSON.stringify(ids));
  } finally {
    await utils.release();
  }
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
"""


def ledger(conn: psycopg.Connection, schema: str = S) -> list[tuple[Any, ...]]:
    """Every ledger row with its timestamp: unchanged means nobody migrated anything."""
    quoted = quote_identifier(schema)
    return [tuple(r) for r in conn.execute(f"select * from {quoted}.migrations order by id")]


def jobs(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(f"select to_jsonb(j)::text from {S}._private_jobs j order by id")
    return [row[0] for row in rows]


def install_ours(url: str, schema: str = S) -> bool:
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.begin() as connection:
            return install(connection, schema)
    finally:
        engine.dispose()


def test_node_package_version(node: NodeGraphileWorker) -> None:
    assert node.version.startswith("0.17.")


@pytest.mark.parametrize("schema", [S, "Jobs$Q"])
def test_node_migrates_nothing_on_our_schema(
    node: NodeGraphileWorker, empty_db_url: str, schema: str
) -> None:
    assert install_ours(empty_db_url, schema) is True
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        before = ledger(conn, schema)
        result = node.cli("--schema-only", "--schema", schema, db_url=empty_db_url)
        assert "Schema updated" in result.stdout
        assert ledger(conn, schema) == before
        assert describe_schema(conn, schema) == EXPECTED


def test_we_adopt_a_schema_node_installed(node: NodeGraphileWorker, empty_db_url: str) -> None:
    node.cli("--schema-only", db_url=empty_db_url)
    ids = node.json_result(node.run_script(ADD_JOBS_WITH_NODE, empty_db_url))
    assert len(ids) == 3
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        node_ledger = ledger(conn)
        assert [(row[0], row[2]) for row in node_ledger] == EXPECTED_REVISION_19["ledger"]
        node_jobs = jobs(conn)
        assert len(node_jobs) == 3

        command.upgrade(alembic_config(empty_db_url), "head")
        assert version_rows(conn) == ["gw0020"]
        ours = ledger(conn)
        assert ours[:-1] == node_ledger
        assert (ours[-1][0], ours[-1][2]) == (20, False)
        assert jobs(conn) == node_jobs
        assert describe_schema(conn, S) == EXPECTED

        assert install_ours(empty_db_url) is False
        assert ledger(conn) == ours
        assert jobs(conn) == node_jobs


def test_node_install_has_our_catalog(
    node: NodeGraphileWorker, empty_db_url: str, db: psycopg.Connection
) -> None:
    node.cli("--schema-only", db_url=empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        node_catalog = describe_schema(conn, S)
        assert install_ours(empty_db_url) is True  # adds revision 20
        node_then_ours = describe_schema(conn, S)
    ours = describe_schema(db, S)
    for section in EXPECTED_REVISION_19:
        assert node_catalog[section] == EXPECTED_REVISION_19[section], f"{section!r} differs"
    assert node_catalog == EXPECTED_REVISION_19
    assert node_then_ours == ours == EXPECTED


def test_node_install_under_a_schema_that_needs_quotes(
    node: NodeGraphileWorker, empty_db_url: str
) -> None:
    node.cli("--schema-only", "--schema", "Jobs$Q", db_url=empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert describe_schema(conn, "Jobs$Q") == EXPECTED_REVISION_19
        before = ledger(conn, "Jobs$Q")
        assert install_ours(empty_db_url, "Jobs$Q") is True
        assert ledger(conn, "Jobs$Q")[:-1] == before
        assert describe_schema(conn, "Jobs$Q") == EXPECTED
