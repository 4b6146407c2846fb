"""Shared fixtures: a real PostgreSQL server, one template database per run (schema
installed), and a fresh clone of it per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from pytest_postgresql import factories
from sqlalchemy import Engine, create_engine, pool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_graphile.testing import database_url, load_schema

# The no-process fixtures point at a running server (see [tool.pytest.ini_options]):
# pytest-postgresql must not spawn its own, since initdb refuses to run as root.
# Database names carry the pid so that concurrent test runs on one server do not collide.
_RUN = f"sg_tests_{os.getpid()}"
postgresql_noproc = factories.postgresql_noproc(dbname=_RUN, load=[load_schema])
postgresql = factories.postgresql("postgresql_noproc")
postgresql_noproc_empty = factories.postgresql_noproc(dbname=f"{_RUN}_empty")
postgresql_empty = factories.postgresql("postgresql_noproc_empty")


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
