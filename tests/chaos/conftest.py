"""Fixtures of the fault-injection tests: a PostgreSQL cluster of their own, a fresh
database per test with the ledger, and worker processes.

These tests stop, crash and restart PostgreSQL, so they are opt-in: they run only when
selected with ``-m chaos`` and allowed with ``SG_ALLOW_PG_RESTART=1`` (``nox -s chaos`` does
both), one at a time (``-p no:xdist``). Otherwise each is skipped with the reason.

``chaos_cluster`` (session)
    The :class:`~tests.chaos._cluster.ChaosCluster`, created if needed and started. It is
    never the server the rest of the suite uses; it is stopped at the end of the session if
    the session started it.
``chaos_db``
    A :class:`ChaosDatabase`: a new database on that cluster with the job queue schema and
    the ledger (``tests/chaos/_ledger.py``), dropped afterwards. The cluster is running when
    the test starts, whatever the previous test left behind.
``workers``
    A :class:`~tests.chaos._workers.Workers` that starts worker processes on ``chaos_db``
    and kills whatever still runs when the test ends.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, pool
from sqlalchemy.orm import Session

from sqlalchemy_graphile import JobHelpers, JobSpec, Task
from sqlalchemy_graphile.testing import load_schema

from ._cluster import ChaosCluster
from ._ledger import SCHEMA_DDL
from ._workers import Workers

ALLOW_ENV = "SG_ALLOW_PG_RESTART"
#: Set by CI: a chaos test that cannot run (no cluster tools, no rights) fails the run
#: instead of being skipped.
REQUIRE_ENV = "SG_REQUIRE_CHAOS"
_DB_PREFIX = "sg_chaos_"
_numbers = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason(config)
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


_skipped_chaos: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.nodeid.startswith("tests/chaos/"):
        _skipped_chaos.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``SG_REQUIRE_CHAOS=1``, a skipped chaos test fails the run."""
    if os.environ.get(REQUIRE_ENV) == "1" and _skipped_chaos:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"{REQUIRE_ENV}=1, but {len(_skipped_chaos)} chaos test(s) were skipped",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _skip_reason(config: pytest.Config) -> str | None:
    if "chaos" not in (config.getoption("markexpr") or ""):
        return (
            "opt-in fault injection: run `make chaos` "
            f"(or `{ALLOW_ENV}=1 .venv/bin/pytest -m chaos -p no:xdist tests/chaos`)"
        )
    if os.environ.get(ALLOW_ENV) != "1":
        return f"stops and restarts a PostgreSQL cluster: set {ALLOW_ENV}=1 to allow it"
    return None


class ChaosDatabase:
    """One test's database on the chaos cluster."""

    def __init__(self, cluster: ChaosCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.url = cluster.url(name)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A new autocommit connection (connections do not survive restarts)."""
        with psycopg.connect(self.cluster.conninfo(self.name), autocommit=True) as connection:
            yield connection

    @contextmanager
    def engine(self, *, pooled: bool = False) -> Iterator[Engine]:
        """A SQLAlchemy engine on psycopg 3; without a pool unless ``pooled`` (pooled
        connections do not outlive a restart)."""
        engine = create_engine(
            self.url.replace("postgresql://", "postgresql+psycopg://", 1),
            poolclass=pool.QueuePool if pooled else pool.NullPool,
        )
        try:
            yield engine
        finally:
            engine.dispose()

    def add_jobs(self, jobs: list[tuple[Task, JobSpec | None]]) -> list[int]:
        """Add the jobs in one committed transaction with :class:`JobHelpers`; their ids."""
        with self.engine() as engine, Session(engine) as session, session.begin():
            helpers = JobHelpers(session)
            return [helpers.add_job(task, spec).id for task, spec in jobs]


@pytest.fixture(scope="session")
def chaos_cluster() -> Iterator[ChaosCluster]:
    cluster = ChaosCluster.from_environment()
    missing = cluster.missing_prerequisites()
    if missing is not None:
        reason = f"no cluster for fault injection: {missing}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ENV}=1 requires the chaos tests to run)")
        pytest.skip(reason)
    started = cluster.ensure_running()
    with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as admin:
        leftovers = admin.execute(
            "select datname from pg_database where datname like %s", (f"{_DB_PREFIX}%",)
        ).fetchall()
        for (name,) in leftovers:
            admin.execute(f'drop database "{name}" with (force)')
    yield cluster
    if started:
        cluster.stop("fast")


@pytest.fixture
def chaos_db(chaos_cluster: ChaosCluster) -> Iterator[ChaosDatabase]:
    chaos_cluster.ensure_running()
    name = f"{_DB_PREFIX}{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(chaos_cluster.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    load_schema(chaos_cluster.host, chaos_cluster.port, chaos_cluster.user, name)
    database = ChaosDatabase(chaos_cluster, name)
    with database.connect() as connection:
        connection.execute(SCHEMA_DDL)
    yield database
    chaos_cluster.ensure_running()
    with psycopg.connect(chaos_cluster.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f'drop database "{name}" with (force)')


@pytest.fixture
def workers(chaos_db: ChaosDatabase, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(chaos_db.url, tmp_path)
    yield started
    started.close()
