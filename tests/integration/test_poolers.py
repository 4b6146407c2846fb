"""The worker, the add paths, WorkerUtils and the command line through a real PgBouncer, in
session and transaction mode, at PgBouncer's default settings (no
``ignore_startup_parameters``, no prepared statement support: Debian's 1.18 has none).

Each add path makes a few hundred concurrent adds of varied statements on more client
connections than PgBouncer has server connections, so that statements of different clients
interleave on each server connection; every add must succeed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import (
    AsyncJobHelpers,
    ConfigurationError,
    JobHelpers,
    JobSpec,
    Worker,
    WorkerUtils,
)
from sqlalchemy_graphile._store._asyncpg import fetch_without_jit
from sqlalchemy_graphile.cli import EXIT_OK, main

from .._doc_blocks import blocks
from .._pgbouncer import pgbouncer
from ._pooled_tasks import Child, Spawn
from ._worker_support import Job3, Recorder, add, jobs, logged, make_worker

POOLERS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "poolers.md"
#: The user, host and database of the URLs in the code blocks of docs/poolers.md.
DOC_TARGET = "app:secret@pgbouncer.internal:6432/app"
#: Concurrent adds per add path; they share more client connections than PgBouncer has
#: server connections (10 per database and user).
ADDS = 300
UNAVAILABLE = "pool:listen:unavailable"


@contextmanager
def _bouncer(db_url: str, pool_mode: str) -> Iterator[str]:
    """``db_url`` through a PgBouncer in ``pool_mode``."""
    url = make_url(db_url)
    assert url.host is not None
    assert url.port is not None
    with pgbouncer(url.host, url.port, pool_mode=pool_mode) as port:
        yield url.set(host="127.0.0.1", port=port).render_as_string(False)


def _pooler(pool_mode: str) -> Any:
    return "transaction" if pool_mode == "transaction" else None


@pytest.fixture(params=["session", "transaction"])
def pool_mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def pooled_url(db_url: str, pool_mode: str) -> Iterator[str]:
    """The test database's URL through a PgBouncer in ``pool_mode``."""
    with _bouncer(db_url, pool_mode) as url:
        yield url


def _job_count(db: psycopg.Connection, identifier: str) -> int:
    (count,) = db.execute(
        "select count(*) from graphile_worker.jobs where task_identifier = %s", [identifier]
    ).fetchone() or (0,)
    return int(count)


# -- the worker ------------------------------------------------------------------------------


@pytest.mark.parametrize("local_queue_size", [None, 8])
async def test_the_worker_runs_jobs_with_jit_off_per_fetch(
    pooled_url: str, pool_mode: str, db: psycopg.Connection, local_queue_size: int | None
) -> None:
    for n in range(20):
        add(db, "job3", f'{{"a": {n}}}')
    rec = Recorder()
    worker = make_worker(
        pooled_url,
        Job3,
        rec=rec,
        concurrency=4,
        pooler=_pooler(pool_mode),
        local_queue_size=local_queue_size,
    )
    await worker.run_once()
    assert sorted(payload["a"] for payload in rec.seen("job3")) == list(range(20))
    assert jobs(db) == []
    # jit was set per transaction, for the fetch: no server session kept it.
    with psycopg.connect(pooled_url, autocommit=True) as other:
        for _ in range(4):  # the server connections PgBouncer holds now, in turn
            (jit,) = other.execute("show jit").fetchone() or ("",)
            assert jit == "on"


async def test_the_batch_fetch_turns_jit_off_for_its_own_transaction_only(
    pooled_url: str,
) -> None:
    pool = await asyncpg.create_pool(pooled_url, min_size=1, max_size=1, statement_cache_size=0)
    try:
        rows = await fetch_without_jit(pool, "select current_setting('jit') as jit, $1::int", 1)
        assert [tuple(row) for row in rows] == [("off", 1)]
        assert await pool.fetchval("select current_setting('jit')") == "on"
        with pytest.raises(asyncpg.DivisionByZeroError):
            await fetch_without_jit(pool, "select 1 / $1::int", 0)
        async with pool.acquire() as connection:  # the one connection, given back clean
            assert not connection.is_in_transaction()
            assert await connection.fetchval("select current_setting('jit')") == "on"
    finally:
        await pool.close()


async def test_the_worker_checks_that_listen_works_and_warns_once_when_it_does_not(
    pooled_url: str, pool_mode: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    events, log = logged()
    rec = Recorder()
    # Through a transaction pooler jobs are found by polling; else only a wake-up finds them.
    poll_interval = 0.1 if pool_mode == "transaction" else 60.0
    worker = make_worker(
        pooled_url,
        Job3,
        rec=rec,
        pooler=_pooler(pool_mode),
        poll_interval=poll_interval,
        events=events,
    )
    with caplog.at_level(logging.INFO, logger="sqlalchemy_graphile.worker"):
        async with worker:
            await log.wait_for(UNAVAILABLE if pool_mode == "transaction" else "pool:listen:success")
            add(db, "job3", '{"a": 1}')
            await log.wait_for("job:complete")
    assert rec.seen("job3") == [{"a": 1}]
    messages = [r.getMessage() for r in caplog.records]
    warnings = [m for m in messages if "LISTEN does not work" in m]
    works = [m for m in messages if m.startswith("LISTEN works")]
    if pool_mode == "transaction":
        assert log.count(UNAVAILABLE) == 1
        assert log.count("pool:listen:success") == 0
        assert len(warnings) == 1
        assert "listen_url" in warnings[0]
        assert "--listen-url" in warnings[0]
        assert "every 0.1 s (poll_interval)" in warnings[0]
        assert "pooler='transaction'" not in warnings[0]  # given already
        assert works == []
    else:
        assert log.count(UNAVAILABLE) == 0
        assert warnings == []
        assert len(works) == 1


async def test_the_listen_warning_suggests_the_pooler_switch_when_it_is_not_given(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    events, log = logged()
    with _bouncer(db_url, "transaction") as pooled:
        worker = make_worker(pooled, Job3, poll_interval=60.0, events=events)
        with caplog.at_level(logging.WARNING, logger="sqlalchemy_graphile.worker"):
            async with worker:
                await log.wait_for(UNAVAILABLE)
    (warning,) = [r.getMessage() for r in caplog.records if "LISTEN does not" in r.getMessage()]
    assert "also give pooler='transaction' (run --pooler transaction)" in warning


async def test_with_a_listen_url_wake_ups_work_behind_a_transaction_pooler(
    db_url: str, db: psycopg.Connection
) -> None:
    events, log = logged()
    rec = Recorder()
    with _bouncer(db_url, "transaction") as pooled:
        worker = make_worker(
            pooled,
            Job3,
            rec=rec,
            pooler="transaction",
            listen_url=db_url,
            poll_interval=60.0,  # only a wake-up can find the job in time
            min_reset_locked_interval=0.05,
            max_reset_locked_interval=0.1,
            crontab="0 4 * * * job3",
            events=events,
        )
        async with worker:
            await log.wait_for("pool:listen:success")
            add(db, "job3", '{"a": 1}')
            await log.wait_for("job:complete")
            # The stale-lock sweep and cron ran through the pooler too.
            await log.wait_for("resetLocked:success", 2)
            await log.wait_for("cron:started")
    assert rec.seen("job3") == [{"a": 1}]
    assert log.count(UNAVAILABLE) == 0
    assert log.count("resetLocked:failure") == 0


async def test_adds_from_inside_tasks_through_the_pooler(
    pooled_url: str, pool_mode: str, db: psycopg.Connection
) -> None:
    parents, children = 40, 5
    for parent in range(parents):
        add(db, "pooled_spawn", f'{{"parent": {parent}, "children": {children}}}')
    events, log = logged()
    rec = Recorder()
    # In session mode each client connection holds one of PgBouncer's 10 server connections:
    # 4 for the worker's pool and up to 4 for the engine of ctx.add_job.
    worker = make_worker(
        pooled_url,
        Spawn,
        Child,
        rec=rec,
        concurrency=4,
        max_pool_size=4,
        pooler=_pooler(pool_mode),
        events=events,
    )
    await worker.run_once()
    assert log.count("job:error") == 0
    assert sorted(rec.seen("pooled_child")) == [
        (parent, n) for parent in range(parents) for n in range(children)
    ]
    assert jobs(db) == []


async def test_a_worker_given_the_documented_asyncpg_engine_adds_jobs_through_it(
    db_url: str, db: psycopg.Connection
) -> None:
    for parent in range(20):
        add(db, "pooled_spawn", f'{{"parent": {parent}, "children": 5}}')
    rec = Recorder()
    with _bouncer(db_url, "transaction") as pooled:
        engine = _documented_engine("asyncpg", pooled)
        assert isinstance(engine, AsyncEngine)
        try:
            worker = Worker(
                engine,
                tasks=[Spawn, Child],
                extensions=[rec],
                concurrency=4,
                pooler="transaction",
                handle_signals=False,
            )
            await worker.run_once()
        finally:
            await engine.dispose()
    assert len(rec.seen("pooled_child")) == 100
    assert jobs(db) == []


def test_run_migrates_and_runs_through_the_pooler(
    empty_db_url: str, pool_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # run --tasks imports from here
    flags = ["--pooler", "transaction"] if pool_mode == "transaction" else []
    run = ["run", "--tasks", "tests.integration._pooled_tasks", "--once", "-j", "4", *flags]
    with _bouncer(empty_db_url, pool_mode) as pooled:
        assert main(["-c", pooled, *run]) == EXIT_OK  # installs the schema, finds no job
        with psycopg.connect(empty_db_url, autocommit=True) as db:
            for parent in range(10):
                add(db, "pooled_spawn", f'{{"parent": {parent}, "children": 3}}')
            assert main(["-c", pooled, *run]) == EXIT_OK
            assert jobs(db) == []


# -- WorkerUtils -----------------------------------------------------------------------------


async def test_worker_utils_adds_and_administers_through_the_pooler(
    pooled_url: str, pool_mode: str, db: psycopg.Connection
) -> None:
    async with WorkerUtils(pooled_url, pooler=_pooler(pool_mode)) as utils:
        assert await utils.migrate() is False
        singles, pairs = await asyncio.gather(
            asyncio.gather(
                *(
                    utils.add_job(Job3(a=i), JobSpec(job_key=f"k{i}") if i % 3 == 0 else None)
                    for i in range(ADDS)
                )
            ),
            asyncio.gather(
                *(utils.add_jobs([(Job3(a=i), None), (Job3(a=-i), None)]) for i in range(ADDS // 3))
            ),
        )
        assert (len(singles), sum(len(pair) for pair in pairs)) == (ADDS, 2 * (ADDS // 3))
        ids = [job.id for job in singles]
        assert len(await utils.reschedule_jobs(ids[:10], priority=5)) == 10
        assert len(await utils.complete_jobs(ids[10:20])) == 10
        assert len(await utils.permanently_fail_jobs(ids[20:30], "no")) == 10
        assert await utils.remove_job("k0") is not None
        await utils.force_unlock_workers(["nobody"])
        assert await utils.cleanup() == {"GC_JOB_QUEUES": 0}
    assert _job_count(db, "job3") == ADDS + 2 * (ADDS // 3) - 10 - 1  # completed, removed


def test_worker_utils_refuses_a_pooler_for_an_engine_of_yours(db_url: str) -> None:
    engine = create_async_engine(make_url(db_url).set(drivername="postgresql+asyncpg"))
    with pytest.raises(ConfigurationError, match=r"docs/poolers\.md"):
        WorkerUtils(engine, pooler="transaction")
    with pytest.raises(ConfigurationError, match="pooler must be None or 'transaction'"):
        WorkerUtils(db_url, pooler="statement")  # type: ignore[arg-type]


# -- JobHelpers and AsyncJobHelpers on the engines of docs/poolers.md -----------------------


def _documented_engine(variant: str, pooled_url: str) -> Engine | AsyncEngine:
    """The engine the code block of docs/poolers.md for ``variant`` creates, pointed at
    ``pooled_url``."""
    (block,) = [b for b in blocks(POOLERS_PAGE) if b.path == "db.py" and b.variant == variant]
    url = make_url(pooled_url)
    target = f"{url.username}@{url.host}:{url.port}/{url.database}"
    assert DOC_TARGET in block.text
    namespace: dict[str, Any] = {}
    exec(block.text.replace(DOC_TARGET, target), namespace)  # our own docs
    engine: Engine | AsyncEngine = namespace["engine"]
    return engine


def _sync_add(engine: Engine, i: int) -> int:
    with Session(engine) as session:
        helpers = JobHelpers(session)
        if i % 3 == 0:
            added = len(helpers.add_jobs([(Job3(a=i), None), (Job3(a=-i), None)]))
        else:
            spec = JobSpec(job_key=f"k{i}", queue_name=f"q{i % 7}") if i % 3 == 1 else None
            helpers.add_job(Job3(a=i), spec)
            added = 1
        session.commit()
    return added


async def _async_add(engine: AsyncEngine, i: int) -> int:
    async with AsyncSession(engine) as session:
        helpers = AsyncJobHelpers(session)
        if i % 3 == 0:
            added = len(await helpers.add_jobs([(Job3(a=i), None), (Job3(a=-i), None)]))
        else:
            spec = JobSpec(job_key=f"k{i}", queue_name=f"q{i % 7}") if i % 3 == 1 else None
            await helpers.add_job(Job3(a=i), spec)
            added = 1
        await session.commit()
    return added


@pytest.mark.parametrize("variant", ["psycopg 3", "psycopg 3, async", "psycopg2", "asyncpg"])
async def test_the_documented_engines_add_jobs_concurrently_through_the_pooler(
    pooled_url: str, db: psycopg.Connection, variant: str
) -> None:
    engine = _documented_engine(variant, pooled_url)
    try:
        if isinstance(engine, AsyncEngine):
            counts = await asyncio.gather(*(_async_add(engine, i) for i in range(ADDS)))
        else:
            with ThreadPoolExecutor(max_workers=15) as threads:
                counts = list(threads.map(lambda i: _sync_add(engine, i), range(ADDS)))
    finally:
        if isinstance(engine, AsyncEngine):
            await engine.dispose()
        else:
            engine.dispose()
    assert sum(counts) == _job_count(db, "job3") == ADDS + ADDS // 3
