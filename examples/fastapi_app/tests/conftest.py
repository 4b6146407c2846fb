"""Fixtures for the service's tests: a database per test, copied from a template that has
the service's table and the job queue schema, and a transaction per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from pytest_postgresql import factories
from signup_service.app import create_app
from signup_service.database import get_session
from signup_service.models import Base
from signup_service.settings import Settings
from sqlalchemy import URL, create_engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine

from sqlalchemy_graphile.pytest_plugin import PostgreSQLExecutor, postgresql_template_url
from sqlalchemy_graphile.testing import database_url


def create_tables(**connection: Any) -> None:
    engine = create_engine(database_url(**connection).set(drivername="postgresql+psycopg"))
    Base.metadata.create_all(engine)
    engine.dispose()


postgresql_noproc = factories.postgresql_noproc(load=[create_tables])
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture(scope="session")
def graphile_worker_database_url(postgresql_noproc: PostgreSQLExecutor) -> URL:
    """The plugin installs the job queue schema into the template."""
    return postgresql_template_url(postgresql_noproc)


@pytest.fixture
def test_database(graphile_worker_database: URL, postgresql: Any) -> URL:
    """This test's own database (asyncpg URL)."""
    info = postgresql.info
    url = database_url(host=info.host, port=info.port, user=info.user, dbname=info.dbname)
    return url.set(drivername="postgresql+asyncpg")


@pytest.fixture
async def connection(test_database: URL) -> AsyncIterator[AsyncConnection]:
    """The test's connection, in a transaction that is rolled back after the test."""
    engine = create_async_engine(test_database)
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()
    await engine.dispose()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session in the test's transaction; the endpoints' commits only end savepoints."""
    async with AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    ) as session:
        yield session


@pytest.fixture
async def client(session: AsyncSession, test_database: URL) -> AsyncIterator[AsyncClient]:
    """An HTTP client of the app whose requests use the test's session."""
    app = create_app(Settings(database_url=test_database, worker_in_app=False))

    async def test_session() -> AsyncIterator[AsyncSession]:
        yield session

    app.dependency_overrides[get_session] = test_session
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        yield client
