"""The common SQLAlchemy test pattern, on four drivers: a connection with an outer
transaction that is rolled back at the end, and a session joined to it with
``join_transaction_mode="create_savepoint"`` (the code under test commits savepoints)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import AsyncJobHelpers, JobHelpers

T = TypeVar("T")

#: The drivers, by the name the tests are parametrised with.
SCHEMES = {
    "asyncpg": "postgresql+asyncpg",
    "psycopg_async": "postgresql+psycopg_async",
    "psycopg": "postgresql+psycopg",
    "psycopg2": "postgresql+psycopg2",
}


async def resolved(value: T | Coroutine[Any, Any, T]) -> T:
    """The value, awaited if the helper returned a coroutine (async session)."""
    if inspect.iscoroutine(value):
        return await value  # type: ignore[no-any-return]
    return value  # type: ignore[return-value]


@dataclass
class Outer:
    """A test's connection with an outer transaction, and a session joined to it with
    ``join_transaction_mode="create_savepoint"``; add jobs through :meth:`add`."""

    session: Session | AsyncSession
    connection: Connection | AsyncConnection

    async def add(self, method: str, *args: Any) -> Any:
        if isinstance(self.session, AsyncSession):
            return await getattr(AsyncJobHelpers(self.session), method)(*args)
        return getattr(JobHelpers(self.session), method)(*args)

    async def commit(self) -> None:
        """The code under test commits: with savepoint mode, only its savepoint ends."""
        await resolved(self.session.commit())


@asynccontextmanager
async def outer_transaction(
    driver: str, db_url: str
) -> AsyncIterator[tuple[Session | AsyncSession, Connection | AsyncConnection]]:
    """A session and its connection on ``driver`` (a key of :data:`SCHEMES`), in an outer
    transaction that is rolled back on the way out."""
    url = db_url.replace("postgresql://", SCHEMES[driver] + "://", 1)
    if driver in ("asyncpg", "psycopg_async"):
        async_engine = create_async_engine(url, poolclass=pool.NullPool)
        async with async_engine.connect() as async_connection:
            transaction = await async_connection.begin()
            async with AsyncSession(
                bind=async_connection, join_transaction_mode="create_savepoint"
            ) as async_session:
                yield async_session, async_connection
            await transaction.rollback()
        await async_engine.dispose()
    else:
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.connect() as connection:
            sync_transaction = connection.begin()
            with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
                yield session, connection
            sync_transaction.rollback()
        engine.dispose()
