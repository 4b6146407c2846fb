"""The worker's job store on asyncpg, run directly: batch fetch, bulk completion and
failure, giving jobs back and clearing stale locks, with the owner guard on each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest

from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._store import Failure, FetchedJob, TaskIds
from sqlalchemy_graphile._store._asyncpg import AsyncpgJobStore

from ._worker_support import jobs, rows

pytestmark = pytest.mark.schema_flavours("ours", "node")

POOL = "sgpool-000000000000000000"
OTHER = "sgpool-other0000000000"


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    connections = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    yield connections
    await connections.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> AsyncpgJobStore:
    return AsyncpgJobStore(pool, catalog_for("graphile_worker"), POOL)


def other_store(pool: asyncpg.Pool) -> AsyncpgJobStore:
    return AsyncpgJobStore(pool, catalog_for("graphile_worker"), OTHER)


def add(db: psycopg.Connection, payload: str = "{}", queue: str | None = None) -> int:
    (job_id,) = db.execute(
        "select id from graphile_worker.add_job('t', %s::json, queue_name := %s)", (payload, queue)
    ).fetchone()  # type: ignore[misc]
    return int(job_id)


async def task_ids(store: AsyncpgJobStore) -> TaskIds:
    return await store.task_ids(["t"])


async def fetch(store: AsyncpgJobStore, size: int = 10) -> list[FetchedJob]:
    return await store.fetch(await task_ids(store), size)


async def test_batch_fetch_takes_one_job_per_named_queue(
    db: psycopg.Connection, pool: asyncpg.Pool, store: AsyncpgJobStore
) -> None:
    # Graphile Worker's batch fetch would take all three jobs of "q"; ours takes the first.
    queued = [add(db, queue="q") for _ in range(3)]
    other = add(db, queue="r")
    free = [add(db) for _ in range(2)]
    fetched = await fetch(store)
    assert sorted(f.id for f in fetched) == sorted([queued[0], other, *free])
    assert all(f.job.attempts == 1 and f.job.locked_by == POOL for f in fetched)
    assert [(j["id"], j["locked_by"]) for j in jobs(db) if j["id"] in queued[1:]] == [
        (queued[1], None),
        (queued[2], None),
    ]
    assert rows(
        db,
        "select queue_name, locked_by from graphile_worker._private_job_queues order by queue_name",
    ) == [("q", POOL), ("r", POOL)]
    # The queues are locked now: the next batch takes nothing of them.
    assert await fetch(other_store(pool)) == []


async def test_batch_fetch_orders_by_priority_then_run_at_within_a_queue(
    db: psycopg.Connection, store: AsyncpgJobStore
) -> None:
    late = add(db, queue="q")
    db.execute(
        "update graphile_worker._private_jobs set run_at = now() - interval '1 minute'"
        " where id = %s",
        (late,),
    )
    early = add(db, queue="q")
    db.execute(
        "update graphile_worker._private_jobs set run_at = now() - interval '2 minutes'"
        " where id = %s",
        (early,),
    )
    urgent = add(db, queue="q")
    db.execute("update graphile_worker._private_jobs set priority = -1 where id = %s", (urgent,))
    order = []
    for _ in range(3):
        (fetched,) = await fetch(store, 500)
        order.append(fetched.id)
        assert await store.complete([fetched]) == {fetched.id}
    assert order == [urgent, early, late]


async def test_fetch_with_application_time(db: psycopg.Connection, store: AsyncpgJobStore) -> None:
    add(db)
    ids = await task_ids(store)
    past = datetime.now(UTC) - timedelta(hours=1)
    assert await store.fetch(ids, 1, now=past) == []
    (fetched,) = await store.fetch(ids, 1, now=datetime.now(UTC) + timedelta(seconds=1))
    assert fetched.job.locked_at is not None
    assert fetched.job.locked_at > datetime.now(UTC)


async def test_bulk_completion_is_guarded_by_the_owner(
    db: psycopg.Connection, store: AsyncpgJobStore
) -> None:
    plain = [add(db) for _ in range(2)]
    queued = [add(db, queue="q")]
    fetched = {f.id: f for f in await fetch(store)}
    assert len(fetched) == 3
    db.execute(
        "update graphile_worker._private_jobs set locked_by = 'other' where id = %s", (plain[1],)
    )
    completed = await store.complete([fetched[i] for i in plain])
    assert completed == {plain[0]}  # the other one is fenced
    assert await store.complete([fetched[i] for i in queued]) == set(queued)
    assert [j["id"] for j in jobs(db)] == [plain[1]]
    assert db.execute("select locked_by from graphile_worker._private_job_queues").fetchall() == [
        (None,)
    ]


async def test_bulk_failure_with_replacement_payloads_and_permanent_flags(
    db: psycopg.Connection, store: AsyncpgJobStore
) -> None:
    first = add(db, '[{"a":1},{"a":2}]')
    second = add(db, '{"b":1}', queue="q")
    fetched = {f.id: f for f in await fetch(store)}
    failed = await store.fail(
        [
            Failure(fetched[first], "Batch failures:\nx", '[{"a":2}]'),
            Failure(fetched[second], "ValueError: y", None, permanent=True),
        ]
    )
    assert failed == {first, second}
    by_id = {j["id"]: j for j in jobs(db)}
    assert by_id[first]["payload"] == [{"a": 2}]
    assert (by_id[first]["attempts"], by_id[first]["last_error"]) == (1, "Batch failures:\nx")
    assert by_id[second]["payload"] == {"b": 1}
    assert by_id[second]["attempts"] == by_id[second]["max_attempts"]
    assert all(j["locked_by"] is None for j in by_id.values())
    assert db.execute("select locked_by from graphile_worker._private_job_queues").fetchall() == [
        (None,)
    ]


async def test_failing_with_one_message_on_shutdown(
    db: psycopg.Connection, pool: asyncpg.Pool, store: AsyncpgJobStore
) -> None:
    ids = [add(db), add(db, queue="q")]
    await fetch(store)
    # another pool's jobs are left alone
    assert await other_store(pool).fail_held(ids, "shutting down") == []
    assert sorted(await store.fail_held(ids, "shutting down")) == ids
    assert {(j["last_error"], j["attempts"], j["locked_by"]) for j in jobs(db)} == {
        ("shutting down", 1, None)
    }


async def test_returning_jobs_refunds_the_attempt(
    db: psycopg.Connection, pool: asyncpg.Pool, store: AsyncpgJobStore
) -> None:
    ids = [add(db), add(db, queue="q")]
    db.execute("update graphile_worker._private_jobs set last_error = 'earlier'")
    await fetch(store)
    before = {j["id"]: j["run_at"] for j in jobs(db)}
    assert await other_store(pool).give_back(ids) == 0
    assert await store.give_back(ids) == 2
    for job in jobs(db):
        assert (job["attempts"], job["locked_by"], job["locked_at"]) == (0, None, None)
        assert job["run_at"] == before[job["id"]]
        assert job["last_error"] == "earlier"
    assert db.execute("select locked_by from graphile_worker._private_job_queues").fetchall() == [
        (None,)
    ]


@pytest.mark.parametrize("app_time", [False, True])
async def test_reset_locked(db: psycopg.Connection, store: AsyncpgJobStore, app_time: bool) -> None:
    fresh, stale = add(db, queue="fresh"), add(db, queue="stale")
    for job_id, queue, age in ((fresh, "fresh", "1 hour"), (stale, "stale", "5 hours")):
        db.execute(
            "update graphile_worker._private_jobs set locked_by = 'x', attempts = 1,"
            " run_at = now() - interval '6 hours', locked_at = now() - %s::interval where id = %s",
            (age, job_id),
        )
        db.execute(
            "update graphile_worker._private_job_queues set locked_by = 'x',"
            " locked_at = now() - %s::interval where queue_name = %s",
            (age, queue),
        )
    await store.reset_stale_locks(datetime.now(UTC) if app_time else None)
    by_id = {j["id"]: j for j in jobs(db)}
    assert by_id[fresh]["locked_by"] == "x"
    assert by_id[stale]["locked_by"] is None
    assert by_id[stale]["attempts"] == 1  # the lost attempt counts
    assert by_id[stale]["run_at"] > datetime.now(UTC) - timedelta(minutes=1)
    queues: dict[str, str | None] = dict(
        db.execute(
            "select queue_name, locked_by from graphile_worker._private_job_queues"
        ).fetchall()
    )
    assert queues == {"fresh": "x", "stale": None}


def test_fetch_rejects_a_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch size"):
        catalog_for("graphile_worker").worker.fetch(0, with_flags=False, app_time=False)


def test_statements_quote_the_schema_and_number_the_parameters() -> None:
    statement = catalog_for("Other$Schema").worker.fetch(1, with_flags=True, app_time=True)
    assert '"Other$Schema"._private_jobs' in statement.numbered
    assert statement.names == ("now", "task_ids", "forbidden_flags", "pool_id")
    assert "cast($1 as timestamptz)" in statement.numbered
    assert ":now" in statement.sql


async def test_release_and_fetch_completes_and_locks_the_next_job_in_one_statement(
    db: psycopg.Connection, store: AsyncpgJobStore
) -> None:
    first, second = add(db, '{"n":1}'), add(db, '{"n":2}')
    tasks = await task_ids(store)
    (fetched,) = await store.fetch(tasks, 1)
    assert fetched.id == first
    recorded, following = await store.release_and_fetch(fetched, tasks)
    assert recorded is True
    assert following is not None
    assert following.id == second
    assert (following.job.attempts, following.job.locked_by) == (1, POOL)
    assert following.job.task_identifier == "t"
    assert following.job.payload == {"n": 2}
    assert [(j["id"], j["locked_by"]) for j in jobs(db)] == [(second, POOL)]
    recorded, following = await store.release_and_fetch(following, tasks)
    assert (recorded, following) == (True, None)
    assert jobs(db) == []


async def test_release_and_fetch_records_a_failure_and_skips_the_released_queue(
    db: psycopg.Connection, store: AsyncpgJobStore
) -> None:
    queued = [add(db, queue="q"), add(db, queue="q")]
    tasks = await task_ids(store)
    (fetched,) = await store.fetch(tasks, 1)
    assert fetched.id == queued[0]
    failure = Failure(fetched, "boom", '{"retry":true}', permanent=False)
    recorded, following = await store.release_and_fetch(failure, tasks)
    # The queue was unlocked by this very statement, whose snapshot still saw it locked.
    assert (recorded, following) == (True, None)
    by_id = {j["id"]: j for j in jobs(db)}
    assert by_id[queued[0]]["last_error"] == "boom"
    assert by_id[queued[0]]["payload"] == {"retry": True}
    assert by_id[queued[0]]["locked_by"] is None
    assert by_id[queued[0]]["run_at"] > datetime.now(UTC)  # backoff
    assert rows(db, "select locked_by from graphile_worker._private_job_queues") == [(None,)]
    (after,) = await store.fetch(tasks, 1)  # a later statement sees the queue free
    assert after.id == queued[1]


async def test_release_and_fetch_is_fenced_by_the_owner_but_still_fetches(
    db: psycopg.Connection, pool: asyncpg.Pool, store: AsyncpgJobStore
) -> None:
    first, second = add(db), add(db)
    tasks = await task_ids(store)
    (fetched,) = await store.fetch(tasks, 1)
    db.execute(
        "update graphile_worker._private_jobs set locked_by = 'other' where id = %s", (first,)
    )
    recorded, following = await store.release_and_fetch(fetched, tasks)
    assert recorded is False  # another owner holds it now: nothing written for it
    assert following is not None
    assert following.id == second
    assert {j["id"]: j["locked_by"] for j in jobs(db)} == {first: "other", second: POOL}


async def test_release_and_fetch_honours_forbidden_flags_and_application_time(
    db: psycopg.Connection, store: AsyncpgJobStore
) -> None:
    plain = add(db)
    db.execute("select graphile_worker.add_job('t', '{}', flags := array['slow'])")
    tasks = await task_ids(store)
    (fetched,) = await store.fetch(tasks, 1, forbidden_flags=["slow"])
    assert fetched.id == plain
    recorded, following = await store.release_and_fetch(
        fetched, tasks, forbidden_flags=["slow"], now=datetime.now(UTC) + timedelta(seconds=1)
    )
    assert (recorded, following) == (True, None)
    assert len(jobs(db)) == 1


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_asynchronous_release_commit_turns_synchronous_commit_off_for_outcomes_only(
    db: psycopg.Connection, pool: asyncpg.Pool, asynchronous: bool
) -> None:
    for _ in range(3):
        add(db)
    catalog = catalog_for("graphile_worker")
    statements = catalog.worker_asynchronous_commit if asynchronous else catalog.worker
    store = AsyncpgJobStore(pool, catalog, POOL, asynchronous_release_commit=asynchronous)
    first, second, third = await fetch(store, 3)
    expected = "off" if asynchronous else "on"
    async with pool.acquire() as connection:
        # Inside one explicit transaction the local setting is visible after each statement.
        for statement, values in (
            (statements.complete_jobs, {"job_ids": str(first.id), "pool_id": POOL}),
            (
                statements.fail_job,
                {
                    "job_id": second.id,
                    "pool_id": POOL,
                    "message": "x",
                    "payload": None,
                    "permanent": False,
                },
            ),
            (
                statements.release_and_fetch(failed=False, with_flags=False, app_time=False),
                {"job_id": third.id, "pool_id": POOL, "task_ids": (await task_ids(store)).ids},
            ),
        ):
            async with connection.transaction():
                await connection.fetch(statement.numbered, *statement.arguments(values))
                assert await connection.fetchval("show synchronous_commit") == expected
            assert await connection.fetchval("show synchronous_commit") == "on"
        async with connection.transaction():  # fetching stays durable
            statement = statements.fetch(1, with_flags=False, app_time=False)
            values = {"pool_id": POOL, "task_ids": (await task_ids(store)).ids}
            await connection.fetch(statement.numbered, *statement.arguments(values))
            assert await connection.fetchval("show synchronous_commit") == "on"
    assert [j["id"] for j in jobs(db)] == [second.id]
