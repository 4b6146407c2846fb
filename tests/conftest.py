"""Shared fixtures: a real PostgreSQL server, one template database per run (schema
installed), and a fresh clone of it per test.

Schema flavours: a test module marked ``pytest.mark.schema_flavours`` runs each of its tests
once per flavour of the installed schema, and its tests may ask for ``schema_flavour`` to
assert what legitimately differs:

``ours``
    Installed by our migrations (the template every other test uses).
``node``
    Installed by the real Node graphile-worker 0.17 (``graphile-worker --schema-only``, its
    own function bodies), in a template of its own. Without Node.js and npm those tests are
    skipped with one line saying why, except in CI (``CI=true``), where that is a failure.
``rust``
    Ours, with ``add_jobs``, ``add_job`` and the ledger's revision 20 as the Rust port's
    migrations 19 and 20 leave them (see :mod:`tests._rust_schema`).

``pytest.mark.schema_flavours`` runs a module on every flavour;
``pytest.mark.schema_flavours("ours", "node")`` on the ones named.

A test parametrised over the add-helper drivers (``driver``) runs on every driver with our
schema and on psycopg 3 alone with Node's: the drivers differ in how they bind parameters,
which the flavour of the schema does not change.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from pytest_postgresql import factories
from sqlalchemy import Engine, create_engine, pool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_graphile.testing import database_url, load_schema
from tests._node import (
    in_ci,
    install_schema_with_node,
    missing_node_tools,
    no_node_reason,
    node_install,
)
from tests._rust_schema import load_rust_schema

# The no-process fixtures point at a running server (see [tool.pytest.ini_options]):
# pytest-postgresql must not spawn its own, since initdb refuses to run as root.
# Database names carry the pid so that concurrent test runs on one server do not collide.
_RUN = f"sg_tests_{os.getpid()}"
postgresql_noproc = factories.postgresql_noproc(dbname=_RUN, load=[load_schema])
postgresql_ours = factories.postgresql("postgresql_noproc")
postgresql_noproc_empty = factories.postgresql_noproc(dbname=f"{_RUN}_empty")
postgresql_empty = factories.postgresql("postgresql_noproc_empty")


#: The flavours a module marked ``schema_flavours`` runs on (see the module docstring).
SCHEMA_FLAVOURS = ("ours", "node", "rust")
#: The one add-helper driver the flavours other than ``ours`` run on.
FLAVOUR_DRIVER = "psycopg"
_NODE_SKIPPED = pytest.StashKey[str]()


def _load_node_schema(
    host: str, port: int | str, user: str, dbname: str, password: str | None = None, **_: object
) -> None:
    """A pytest-postgresql ``load`` callable: Node's own ``--schema-only`` installs the schema."""
    url = database_url(host=host, port=port, user=user, dbname=dbname, password=password)
    install_schema_with_node(node_install(), url.render_as_string(hide_password=False))


postgresql_noproc_node = factories.postgresql_noproc(
    dbname=f"{_RUN}_node", load=[_load_node_schema]
)
postgresql_node = factories.postgresql("postgresql_noproc_node")
postgresql_noproc_rust = factories.postgresql_noproc(dbname=f"{_RUN}_rust", load=[load_rust_schema])
postgresql_rust = factories.postgresql("postgresql_noproc_rust")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("schema_flavours")
    if marker is None or "schema_flavour" not in metafunc.fixturenames:
        return
    flavours = marker.args or SCHEMA_FLAVOURS
    unknown = set(flavours) - set(SCHEMA_FLAVOURS)
    assert not unknown, f"unknown schema flavours {sorted(unknown)}"
    metafunc.parametrize("schema_flavour", flavours, indirect=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests of a flavour other than ``ours`` on drivers other than
    :data:`FLAVOUR_DRIVER`; without Node.js and npm (outside CI), deselect every test that
    needs them and say so in one line at the end of the run."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    node_missing = missing_node_tools() if not in_ci() else []
    needing_node = 0
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        flavour = params.get("schema_flavour", "ours")
        other_driver = params.get("driver", FLAVOUR_DRIVER) != FLAVOUR_DRIVER
        needs_node = flavour == "node" or item.get_closest_marker("compat") is not None
        if flavour != "ours" and other_driver:
            drop.append(item)
        elif needs_node and node_missing:
            drop.append(item)
            needing_node += 1
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if needing_node:
        config.stash[_NODE_SKIPPED] = (
            f"skipped {needing_node} test(s) that need Graphile Worker for Node: "
            f"{no_node_reason(node_missing)} (CI=true makes this a failure)"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    message = terminalreporter.config.stash.get(_NODE_SKIPPED, None)
    if message is not None:
        terminalreporter.write_line(message, yellow=True)


@pytest.fixture
def schema_flavour(request: pytest.FixtureRequest) -> str:
    """Which flavour of the schema the test database has: ``ours`` unless the module is
    marked ``schema_flavours``."""
    return str(getattr(request, "param", "ours"))


@pytest.fixture
def postgresql(request: pytest.FixtureRequest, schema_flavour: str) -> psycopg.Connection:
    """A fresh database cloned from the template of ``schema_flavour``."""
    connection: psycopg.Connection = request.getfixturevalue(f"postgresql_{schema_flavour}")
    return connection


def _url(connection: psycopg.Connection) -> str:
    info = connection.info
    return database_url(
        host=info.host, port=info.port, user=info.user, dbname=info.dbname, password=info.password
    ).render_as_string(hide_password=False)


@pytest.fixture
def db_url(postgresql: psycopg.Connection) -> str:
    """A plain ``postgresql://`` URL of a fresh database with the schema installed."""
    return _url(postgresql)


@pytest.fixture
def empty_db_url(postgresql_empty: psycopg.Connection) -> str:
    """A plain ``postgresql://`` URL of a fresh, empty database."""
    return _url(postgresql_empty)


@pytest.fixture
def db(postgresql: psycopg.Connection) -> psycopg.Connection:
    """An autocommit psycopg connection to the test database, for setting up and asserting."""
    postgresql.autocommit = True
    return postgresql


@pytest.fixture
def sync_engine(db_url: str) -> Iterator[Engine]:
    """A SQLAlchemy engine on psycopg 3 for the test database."""
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


@pytest.fixture
async def async_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A SQLAlchemy async engine on asyncpg for the test database."""
    engine = create_async_engine(
        db_url.replace("postgresql://", "postgresql+asyncpg://", 1), poolclass=pool.NullPool
    )
    yield engine
    await engine.dispose()
