"""A task adds follow-up jobs through its context inside a running ``Worker``, and they run.

The context's add methods go through the worker's own asyncpg pool, whether the worker was
given a URL or a caller's async engine (asyncpg or psycopg 3), whose URL and options the
pool takes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_graphile import JobSpec, RawJobSpec, Task, WorkerContext

from ._worker_support import Recorder, jobs, make_worker, recorder

pytestmark = pytest.mark.schema_flavours


class Child(Task):
    IDENTIFIER: ClassVar[str] = "child"
    n: int

    async def run(self, ctx: WorkerContext) -> None:
        recorder(ctx).calls.append(("child", (ctx.job.id, self.n)))


class Parent(Task):
    """Adds one child with ``add_job`` and two with ``add_raw_jobs`` (one keyed)."""

    IDENTIFIER: ClassVar[str] = "parent"

    async def run(self, ctx: WorkerContext) -> None:
        first = await ctx.add_job(Child(n=1), JobSpec(queue_name="children"))
        more = await ctx.add_raw_jobs(
            [RawJobSpec("child", {"n": 2}), RawJobSpec("child", {"n": 3}, JobSpec(job_key="c3"))]
        )
        added = [(job.id, job.payload["n"]) for job in (first, *more)]
        recorder(ctx).calls.append(("parent", added))


@pytest.fixture(params=["url", "asyncpg", "psycopg_async"])
async def worker_database(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Any]:
    """What the worker is given: its URL, or a caller's async engine on each driver."""
    if request.param == "url":
        yield db_url
        return
    engine = create_async_engine(
        db_url.replace("postgresql://", f"postgresql+{request.param}://", 1),
        poolclass=pool.NullPool,
    )
    yield engine
    await engine.dispose()


async def test_a_task_adds_follow_up_jobs_that_the_worker_then_runs(
    worker_database: Any, db: psycopg.Connection
) -> None:
    db.execute("select graphile_worker.add_job('parent')")
    rec = Recorder()
    await make_worker(worker_database, Parent, Child, rec=rec).run_once()
    assert rec.failures == []
    (added,) = rec.seen("parent")
    assert [n for _, n in added] == [1, 2, 3]
    assert sorted(rec.seen("child")) == sorted(added)
    assert jobs(db) == []
