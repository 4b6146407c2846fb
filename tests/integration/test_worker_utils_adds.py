"""WorkerUtils' adds: on the asyncpg connection under an asyncpg engine, through SQLAlchemy on
any other; one auto-committed statement where that is the whole write, a transaction where
it is not, and nothing committed when an add fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psycopg
import pytest
import sqlalchemy.exc
from asyncpg.connection import LoggedQuery
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlalchemy_graphile import (
    BatchTask,
    GraphileWorkerError,
    JobSpec,
    RawJobSpec,
    Task,
    WorkerUtils,
    _sql_jobs,
)
from sqlalchemy_graphile.context import WorkerContext

from .test_helpers_concurrency import DEADLINE, hold_locked_job, wait_until_blocked


class Email(Task):
    IDENTIFIER: ClassVar[str] = "email"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Line(BatchTask):
    IDENTIFIER: ClassVar[str] = "lines"
    n: int

    @classmethod
    async def run_batch(cls, items: list[Line], ctx: WorkerContext) -> None:
        return None


@dataclass
class Seen:
    """What one pooled connection of an engine was asked to run: statements SQLAlchemy's
    cursor executed, and queries its asyncpg connection ran (asyncpg only)."""

    cursor: list[str] = field(default_factory=list)
    asyncpg: list[str] = field(default_factory=list)
    pid: int = 0

    def clear(self) -> None:
        self.cursor.clear()
        self.asyncpg.clear()


async def one_connection_engine(db_url: str, driver: str) -> tuple[AsyncEngine, Seen]:
    """An engine of one pooled connection on ``driver``, watched by a :class:`Seen`."""
    engine = create_async_engine(
        make_url(db_url).set(drivername=f"postgresql+{driver}"), pool_size=1, max_overflow=0
    )
    seen = Seen()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def on_cursor(*args: Any) -> None:
        seen.cursor.append(args[2])

    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        if driver == "asyncpg":

            def on_query(query: LoggedQuery) -> None:
                seen.asyncpg.append(query.query)

            raw.driver_connection.add_query_logger(on_query)  # type: ignore[union-attr]
        pid = await connection.exec_driver_sql("select pg_backend_pid()")
        seen.pid = int(pid.scalar_one())
    seen.clear()
    return engine, seen


@pytest.fixture
async def on_asyncpg(db_url: str) -> AsyncIterator[tuple[WorkerUtils, Seen]]:
    engine, seen = await one_connection_engine(db_url, "asyncpg")
    yield WorkerUtils(engine), seen
    await engine.dispose()


@pytest.fixture
async def on_psycopg(db_url: str) -> AsyncIterator[tuple[WorkerUtils, Seen]]:
    engine, seen = await one_connection_engine(db_url, "psycopg_async")
    yield WorkerUtils(engine), seen
    await engine.dispose()


@pytest.fixture
def holder(db_url: str) -> Iterator[psycopg.Connection]:
    connection = psycopg.connect(db_url)
    yield connection
    connection.close()


def job_keys_and_payloads(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in db.execute(
            "select t.identifier, j.key, j.payload::text from graphile_worker._private_jobs j"
            " join graphile_worker._private_tasks t on t.id = j.task_id order by j.id"
        ).fetchall()
    ]


async def logged(seen: Seen) -> list[str]:
    """The queries asyncpg logged: its query loggers are called with ``call_soon``, so the
    ones of the last query run once the event loop turns."""
    await asyncio.sleep(0)
    return seen.asyncpg


def adds(statements: list[str]) -> list[str]:
    return [s for s in statements if ".add_job(" in s or ".add_jobs(" in s]


async def test_on_asyncpg_each_add_is_one_statement_on_the_engines_asyncpg_connection(
    on_asyncpg: tuple[WorkerUtils, Seen], db: psycopg.Connection
) -> None:
    utils, seen = on_asyncpg
    await utils.add_job(Email(to="a"))
    await utils.add_jobs([(Email(to="b"), None), (Email(to="c"), JobSpec(priority=1))])
    await utils.add_raw_job("raw", {"n": 1}, JobSpec(job_key="k1", queue_name="q"))
    await utils.add_raw_jobs([RawJobSpec("raw", {"n": 2}), RawJobSpec("other", {"n": 3})])
    await utils.add_batch_job([Line(n=1)], JobSpec(job_key="lines"))
    ids = await utils.add_jobs([(Email(to="d"), None), (Email(to="e"), None)], return_jobs=False)
    assert all(isinstance(job_id, int) for job_id in ids)
    # Six adds, one statement each, on the asyncpg connection: no BEGIN / COMMIT, and
    # nothing through SQLAlchemy's cursor.
    assert len(adds(await logged(seen))) == 6
    assert [s for s in seen.asyncpg if s.strip().lower() in ("begin", "commit")] == []
    assert seen.cursor == []
    # Each has committed: another connection sees all of them.
    assert job_keys_and_payloads(db) == [
        ("email", None, '{"to":"a"}'),
        ("email", None, '{"to":"b"}'),
        ("email", None, '{"to":"c"}'),
        ("raw", "k1", '{"n":1}'),
        ("raw", None, '{"n":2}'),
        ("other", None, '{"n":3}'),
        ("lines", "lines", '[{"n":1}]'),
        ("email", None, '{"to":"d"}'),
        ("email", None, '{"to":"e"}'),
    ]


async def test_on_asyncpg_an_empty_bulk_add_takes_no_connection(
    on_asyncpg: tuple[WorkerUtils, Seen],
) -> None:
    utils, seen = on_asyncpg
    assert await utils.add_jobs([]) == []
    assert await utils.add_raw_jobs([]) == []
    assert await logged(seen) == []
    assert seen.cursor == []


async def test_on_asyncpg_a_bulk_add_of_keyed_jobs_runs_in_one_transaction(
    on_asyncpg: tuple[WorkerUtils, Seen], db: psycopg.Connection
) -> None:
    utils, seen = on_asyncpg
    jobs = await utils.add_raw_jobs(
        [RawJobSpec("raw", {"n": 1}, JobSpec(job_key="a")), RawJobSpec("raw", {"n": 2})]
    )
    assert [job.key for job in jobs] == ["a", None]
    assert [s.strip().lower() for s in await logged(seen) if ".add_jobs(" not in s] == [
        "begin",
        "commit",
    ]
    assert len(adds(seen.asyncpg)) == 1
    assert len(job_keys_and_payloads(db)) == 2


async def test_on_psycopg_adds_go_through_sqlalchemy(
    on_psycopg: tuple[WorkerUtils, Seen], db: psycopg.Connection
) -> None:
    utils, seen = on_psycopg
    await utils.add_job(Email(to="a"))
    await utils.add_raw_jobs([RawJobSpec("raw", {"n": 1}), RawJobSpec("raw", {"n": 2})])
    assert len(adds(seen.cursor)) == 2
    assert len(job_keys_and_payloads(db)) == 3


@pytest.mark.parametrize("engine_driver", ["asyncpg", "psycopg_async"])
async def test_a_bulk_add_that_fails_after_writing_leaves_nothing_committed(
    engine_driver: str,
    db_url: str,
    db: psycopg.Connection,
    holder: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The unkeyed job is written by the add's first statement; the keyed one meets its key
    locked in the middle of the call and, with no second attempt allowed, the add fails:
    the first job must not stay behind."""
    monkeypatch.setattr(_sql_jobs, "MAX_ADD_ATTEMPTS", 1)
    hold_locked_job(holder, "k")
    engine, seen = await one_connection_engine(db_url, engine_driver)
    try:
        utils = WorkerUtils(engine)
        adding = asyncio.create_task(
            utils.add_raw_jobs(
                [RawJobSpec("raw", {"n": 1}), RawJobSpec("raw", {"n": 2}, JobSpec(job_key="k"))]
            )
        )
        await wait_until_blocked(db, seen.pid)
        holder.commit()
        with pytest.raises(GraphileWorkerError, match="could not add the job with key 'k'"):
            await asyncio.wait_for(adding, DEADLINE)
        assert job_keys_and_payloads(db) == [("holder", "k", "{}")]
        # The connection went back to the pool clean: the next add commits.
        await utils.add_raw_job("raw", {"n": 3})
        assert job_keys_and_payloads(db)[-1] == ("raw", None, '{"n":3}')
    finally:
        await engine.dispose()


@pytest.mark.parametrize("engine_driver", ["asyncpg", "psycopg_async"])
async def test_a_database_error_is_sqlalchemys_on_either_driver(
    engine_driver: str, db_url: str, db: psycopg.Connection
) -> None:
    db.execute(
        "create function reject() returns trigger language plpgsql as $$ begin"
        " raise exception 'rejected' using errcode = 'check_violation'; end $$;"
        " create trigger reject before insert on graphile_worker._private_jobs"
        " for each row when (new.payload::text like '%reject%') execute function reject()"
    )
    engine, _ = await one_connection_engine(db_url, engine_driver)
    try:
        utils = WorkerUtils(engine)
        with pytest.raises(sqlalchemy.exc.IntegrityError) as raised:
            await utils.add_raw_jobs([RawJobSpec("raw", {"n": 1}), RawJobSpec("raw", "reject")])
        assert getattr(raised.value.orig, "sqlstate", None) == "23514"
        assert "rejected" in str(raised.value.orig)
        assert job_keys_and_payloads(db) == []
        await utils.add_raw_job("raw", {"n": 2})
        assert job_keys_and_payloads(db) == [("raw", None, '{"n":2}')]
    finally:
        await engine.dispose()


async def test_on_asyncpg_a_cancelled_add_spares_the_pool(
    on_asyncpg: tuple[WorkerUtils, Seen], db: psycopg.Connection, holder: psycopg.Connection
) -> None:
    """Cancelled while its statement waits, the add's connection may still be busy with it:
    it is closed, not handed out again."""
    utils, seen = on_asyncpg
    hold_locked_job(holder, "k")
    adding = asyncio.create_task(utils.add_raw_job("raw", {"n": 1}, JobSpec(job_key="k")))
    await wait_until_blocked(db, seen.pid)
    adding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await adding
    holder.rollback()
    # The pool's one connection was replaced: the next add runs on a new one and commits.
    job = await utils.add_raw_job("raw", {"n": 2}, JobSpec(job_key="k"))
    assert job.key == "k"
    assert job_keys_and_payloads(db) == [("raw", "k", '{"n":2}')]
    async with utils.engine.connect() as connection:
        pid = (await connection.exec_driver_sql("select pg_backend_pid()")).scalar_one()
    assert pid != seen.pid
