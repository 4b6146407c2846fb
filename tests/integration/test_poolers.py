"""The worker and the add paths through a real PgBouncer, in session and transaction mode,
at PgBouncer's default settings (no ``ignore_startup_parameters``, no prepared statement
support)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import make_url

from .._pgbouncer import pgbouncer
from ._worker_support import Job3, Recorder, add, eventually, jobs, make_worker


def _through(db_url: str, port: int) -> str:
    return make_url(db_url).set(host="127.0.0.1", port=port).render_as_string(False)


@pytest.fixture(params=["session", "transaction"])
def pool_mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def pooled_url(db_url: str, pool_mode: str) -> Iterator[str]:
    """The test database's URL through a PgBouncer in ``pool_mode``."""
    url = make_url(db_url)
    assert url.host is not None
    assert url.port is not None
    with pgbouncer(url.host, url.port, pool_mode=pool_mode) as port:
        yield _through(db_url, port)


@pytest.mark.parametrize("local_queue_size", [None, 8])
async def test_the_worker_connects_and_runs_jobs_with_jit_off_per_fetch(
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
        prepared_statements=pool_mode == "session",
        local_queue_size=local_queue_size,
    )
    await worker.run_once()
    assert sorted(payload["a"] for payload in rec.seen("job3")) == list(range(20))
    assert jobs(db) == []
    # jit was set per transaction, for the fetch: no server session kept it.
    with psycopg.connect(pooled_url, autocommit=True) as other:
        for _ in range(4):  # every server connection PgBouncer holds now, in turn
            (jit,) = other.execute("show jit").fetchone() or ("",)
            assert jit == "on"


async def test_a_continuous_worker_starts_through_the_pooler(
    pooled_url: str, pool_mode: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    worker = make_worker(
        pooled_url, Job3, rec=rec, poll_interval=0.05, prepared_statements=pool_mode == "session"
    )
    async with worker:
        add(db, "job3", '{"a": 1}')
        await eventually(lambda: rec.seen("job3"))
    assert rec.seen("job3") == [{"a": 1}]
