"""Adding a job to a schema that is not installed raises SchemaNotInstalledError, with the
worker's hint, on every add path and driver, and leaves the caller's transaction to them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy import pool
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_graphile import (
    BatchTask,
    Job,
    RawJobSpec,
    SchemaNotInstalledError,
    Task,
    Worker,
    WorkerContext,
    WorkerUtils,
)
from sqlalchemy_graphile.cli import EXIT_ERROR, main

from ._enqueue_drivers import DRIVERS, Driver, Tx


class Welcome(Task):
    IDENTIFIER: ClassVar[str] = "welcome"
    to: str = "ada@example.com"

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Ping(BatchTask):
    IDENTIFIER: ClassVar[str] = "ping"
    n: int = 0

    @classmethod
    async def run_batch(cls, items: list[Ping], ctx: WorkerContext) -> None:
        return None


Add = Callable[[Tx], Awaitable[Job | list[Job] | list[int]]]
ADDS: dict[str, Add] = {
    "add_job": lambda tx: tx.add_job(Welcome()),
    "add_jobs": lambda tx: tx.add_jobs([(Welcome(), None), (Welcome(to="b@example.com"), None)]),
    "add_raw_job": lambda tx: tx.add_raw_job("welcome", {"to": "c@example.com"}),
    "add_raw_jobs": lambda tx: tx.add_raw_jobs([RawJobSpec("welcome", {})]),
    "add_batch_job": lambda tx: tx.add_batch_job([Ping(n=1), Ping(n=2)]),
    "add_raw_jobs ids": lambda tx: tx.call("add_raw_jobs", [RawJobSpec("w")], return_jobs=False),
    "copy_raw_jobs": lambda tx: tx.call("copy_raw_jobs", [RawJobSpec("welcome", {})]),
}


def _app_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("create table app_users (email text not null)")


def _app_rows(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("select count(*) from app_users").fetchone()
    assert row is not None
    return int(row[0])


async def _add_in_app_transaction(
    driver: Driver, add: Add, schema: str | None = None
) -> SchemaNotInstalledError:
    """Write an app row, add a job in the same transaction, and check that the add raised
    our error and left the transaction open and aborted, as the driver leaves it."""
    async with driver.transaction(schema) as tx:
        await tx.scalar("insert into app_users (email) values ('ada@example.com') returning 1")
        with pytest.raises(SchemaNotInstalledError) as raised:
            await add(tx)
        # Still the caller's transaction: the database refuses further statements in it
        # (25P02) until the caller rolls back; we neither rolled back nor committed.
        with pytest.raises(DBAPIError, match="current transaction is aborted"):
            await tx.scalar("select 1")
        await tx.rollback()
    return raised.value


@pytest.mark.parametrize("name", DRIVERS)
@pytest.mark.parametrize("add", ADDS)
async def test_every_add_before_the_schema_exists(name: str, add: str, empty_db_url: str) -> None:
    _app_table(empty_db_url)
    driver = Driver(name, empty_db_url)
    try:
        error = await _add_in_app_transaction(driver, ADDS[add])
    finally:
        await driver.dispose()
    assert "'graphile_worker' is not installed" in str(error)
    assert "sqlalchemy-graphile migrate" in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert _app_rows(empty_db_url) == 0


@pytest.mark.parametrize("name", DRIVERS)
@pytest.mark.parametrize("schema", ["public", "not_here"])
@pytest.mark.parametrize("add", ["add_job", "add_jobs"])
async def test_a_valid_schema_name_that_is_not_installed(
    name: str, schema: str, add: str, db_url: str
) -> None:
    """``public`` exists without our functions and types; ``not_here`` does not exist."""
    _app_table(db_url)
    driver = Driver(name, db_url)
    try:
        error = await _add_in_app_transaction(driver, ADDS[add], schema)
    finally:
        await driver.dispose()
    assert f"{schema!r} is not installed" in str(error)
    assert f"sqlalchemy-graphile -s {schema} migrate" in str(error)
    assert _app_rows(db_url) == 0


async def test_the_hint_is_the_one_the_worker_gives(empty_db_url: str) -> None:
    worker = Worker(empty_db_url, tasks=[Welcome], handle_signals=False)
    with pytest.raises(SchemaNotInstalledError) as at_start:
        await worker.run_once()
    async with WorkerUtils(empty_db_url) as utils:
        with pytest.raises(SchemaNotInstalledError) as at_add:
            await utils.add_job(Welcome())
    assert str(at_add.value).startswith(str(at_start.value) + " (PostgreSQL said: schema")


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg_async"])
async def test_worker_utils_adds(scheme: str, empty_db_url: str) -> None:
    engine = create_async_engine(
        empty_db_url.replace("postgresql", scheme, 1), poolclass=pool.NullPool
    )
    try:
        utils = WorkerUtils(engine)
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: utils.add_job(Welcome()),
            lambda: utils.add_jobs([(Welcome(), None)]),
            lambda: utils.add_raw_job("welcome"),
            lambda: utils.add_raw_jobs([RawJobSpec("welcome", {})]),
            lambda: utils.add_batch_job([Ping()]),
            lambda: utils.remove_job("a key"),
            lambda: utils.complete_jobs([1]),
            lambda: utils.cleanup(tasks=["GC_JOB_QUEUES"]),
        ]
        for call in calls:
            with pytest.raises(SchemaNotInstalledError, match="is not installed"):
                await call()
    finally:
        await engine.dispose()


def test_cli_add(empty_db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", empty_db_url, "add", "welcome", "--payload", "{}"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("sqlalchemy-graphile: error: the job queue schema 'graphile_worker'")
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


class AddsFollowUp(Task):
    """Adds a follow-up job from inside a running job and reports what that raised."""

    IDENTIFIER: ClassVar[str] = "adds_follow_up"

    async def run(self, ctx: WorkerContext) -> None:
        outcome = ctx.get_ext(Outcome)
        assert outcome is not None
        try:
            await ctx.add_job(Welcome())
        except BaseException as error:
            outcome.error = error
            raise
        finally:
            outcome.done.set()


class Outcome:
    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.done = asyncio.Event()


async def test_ctx_add_job_after_the_schema_lost_its_functions(
    db_url: str, db: psycopg.Connection
) -> None:
    db.execute("select graphile_worker.add_job('adds_follow_up')")
    # The start-up check reads the ledger only: the worker starts, and the add fails (a
    # single add calls add_job or add_jobs, by its job key mode: both are gone).
    for (signature,) in db.execute(
        "select oid::regprocedure::text from pg_proc"
        " where pronamespace = 'graphile_worker'::regnamespace"
        " and proname in ('add_job', 'add_jobs')"
    ).fetchall():
        db.execute(f"drop function {signature}")
    outcome = Outcome()
    worker = Worker(db_url, tasks=[AddsFollowUp], extensions=[outcome], handle_signals=False)
    await worker.run_once()
    assert outcome.done.is_set()
    assert isinstance(outcome.error, SchemaNotInstalledError), outcome.error
    assert "'graphile_worker' is not installed" in str(outcome.error)
