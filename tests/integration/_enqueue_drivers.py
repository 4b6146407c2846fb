"""One async facade over JobHelpers (sync Session) and AsyncJobHelpers (AsyncSession), so a
test runs unchanged on asyncpg, psycopg 3 async, psycopg 3 sync and psycopg2.

Also: a LISTEN probe for ``jobs:insert`` and a counter of statements sent by an engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, pool, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import (
    AsyncJobHelpers,
    BatchTask,
    Job,
    JobHelpers,
    JobSpec,
    RawJobSpec,
    Task,
)

DRIVERS = ("asyncpg", "psycopg_async", "psycopg", "psycopg2")
_SCHEMES = {
    "asyncpg": "postgresql+asyncpg",
    "psycopg_async": "postgresql+psycopg_async",
    "psycopg": "postgresql+psycopg",
    "psycopg2": "postgresql+psycopg2",
}


class Tx:
    """A session with a transaction open, and the helper methods bound to it."""

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        raise NotImplementedError

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]:
        raise NotImplementedError

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        raise NotImplementedError

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]:
        raise NotImplementedError

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        raise NotImplementedError

    async def remove_job(self, job_key: str) -> Job | None:
        raise NotImplementedError

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The helper method named ``method``, called with these arguments."""
        raise NotImplementedError

    async def scalar(self, sql: str) -> Any:
        raise NotImplementedError

    async def commit(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A ``begin_nested()`` block; raising inside rolls the savepoint back."""
        raise NotImplementedError


class _SyncTx(Tx):
    # The helper calls run in a thread so that a call blocked on a lock does not block the
    # event loop (the concurrency tests release the lock from the loop).
    def __init__(self, session: Session, schema: str | None) -> None:
        self.session = session
        self.helpers = JobHelpers(session, schema)

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        return await asyncio.to_thread(self.helpers.add_job, task, spec)

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]:
        return await asyncio.to_thread(self.helpers.add_jobs, jobs)

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        return await asyncio.to_thread(self.helpers.add_raw_job, identifier, payload, spec)

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]:
        return await asyncio.to_thread(self.helpers.add_raw_jobs, jobs)

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        return await asyncio.to_thread(self.helpers.add_batch_job, items, spec)

    async def remove_job(self, job_key: str) -> Job | None:
        return await asyncio.to_thread(self.helpers.remove_job, job_key)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.helpers, method), *args, **kwargs)

    async def scalar(self, sql: str) -> Any:
        return self.session.execute(text(sql)).scalar()

    async def commit(self) -> None:
        self.session.commit()

    async def rollback(self) -> None:
        self.session.rollback()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        with self.session.begin_nested():
            yield


class _AsyncTx(Tx):
    def __init__(self, session: AsyncSession, schema: str | None) -> None:
        self.session = session
        self.helpers = AsyncJobHelpers(session, schema)

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        return await self.helpers.add_job(task, spec)

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]:
        return await self.helpers.add_jobs(jobs)

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        return await self.helpers.add_raw_job(identifier, payload, spec)

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]:
        return await self.helpers.add_raw_jobs(jobs)

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        return await self.helpers.add_batch_job(items, spec)

    async def remove_job(self, job_key: str) -> Job | None:
        return await self.helpers.remove_job(job_key)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self.helpers, method)(*args, **kwargs)

    async def scalar(self, sql: str) -> Any:
        return (await self.session.execute(text(sql))).scalar()

    async def commit(self) -> None:
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self.session.begin_nested():
            yield


class Driver:
    """An engine for one driver, opening :class:`Tx` objects and counting statements."""

    def __init__(self, name: str, db_url: str) -> None:
        self.name = name
        url = db_url.replace("postgresql://", _SCHEMES[name] + "://", 1)
        self.engine: Engine | AsyncEngine
        if name in ("asyncpg", "psycopg_async"):
            self.engine = create_async_engine(url, poolclass=pool.NullPool)
            sync_engine = self.engine.sync_engine
        else:
            self.engine = create_engine(url, poolclass=pool.NullPool)
            sync_engine = self.engine
        self.statements: list[str] = []
        event.listen(sync_engine, "before_cursor_execute", self._record)

    def _record(self, *args: Any) -> None:
        self.statements.append(args[2])

    @asynccontextmanager
    async def transaction(self, schema: str | None = None) -> AsyncIterator[Tx]:
        """A session with an open transaction; rolled back at the end unless committed."""
        if isinstance(self.engine, AsyncEngine):
            async with AsyncSession(self.engine) as async_session:
                await async_session.begin()
                yield _AsyncTx(async_session, schema)
        else:
            with Session(self.engine) as session:
                session.begin()
                yield _SyncTx(session, schema)

    async def dispose(self) -> None:
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
        else:
            self.engine.dispose()


class Listener:
    """A separate autocommit connection LISTENing on ``jobs:insert``."""

    def __init__(self, db_url: str) -> None:
        self.connection = psycopg.connect(db_url, autocommit=True)
        self.connection.execute('listen "jobs:insert"')

    def until_count(self, count: int, deadline: float = 10.0) -> list[int | None]:
        """Collect notification counts until one with ``count`` arrives (the positive
        control); return the counts received before it. Fails after ``deadline`` seconds."""
        received: list[int | None] = []
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for notify in self.connection.notifies(timeout=end - time.monotonic()):
                value = json.loads(notify.payload)["count"] if notify.payload else None
                if value == count:
                    return received
                received.append(value)
        raise AssertionError(f"no notification with count {count} within {deadline} s: {received}")

    def close(self) -> None:
        self.connection.close()


@contextmanager
def listening(db_url: str) -> Iterator[Listener]:
    listener = Listener(db_url)
    try:
        yield listener
    finally:
        listener.close()
