"""The worker's statements, run directly: the ones the built-in source and releaser do not
use yet (batch fetch, bulk completion and failure, returning jobs) included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest

from sqlalchemy_graphile.worker._sql import flag_list, id_list, recorded_ids, statements_for

from ._worker_support import jobs, rows

pytestmark = pytest.mark.schema_flavours("ours", "node")

S = statements_for("graphile_worker")
POOL = "sgpool-000000000000000000"


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_url)
    yield connection
    await connection.close()


def add(db: psycopg.Connection, payload: str = "{}", queue: str | None = None) -> int:
    (job_id,) = db.execute(
        "select id from graphile_worker.add_job('t', %s::json, queue_name := %s)", (payload, queue)
    ).fetchone()  # type: ignore[misc]
    return int(job_id)


async def task_ids(conn: asyncpg.Connection) -> str:
    await conn.execute(S.register_tasks, ["t"])
    return id_list(r["id"] for r in await conn.fetch(S.select_task_ids, ["t"]))


async def test_batch_fetch_takes_one_job_per_named_queue(
    db: psycopg.Connection, conn: asyncpg.Connection
) -> None:
    # Graphile Worker's batch fetch would take all three jobs of "q"; ours takes the first.
    queued = [add(db, queue="q") for _ in range(3)]
    other = add(db, queue="r")
    free = [add(db) for _ in range(2)]
    fetched = await conn.fetch(
        S.fetch(10, with_flags=False, app_time=False), POOL, await task_ids(conn)
    )
    assert sorted(r["id"] for r in fetched) == sorted([queued[0], other, *free])
    assert all(r["attempts"] == 1 and r["locked_by"] == POOL for r in fetched)
    assert [(j["id"], j["locked_by"]) for j in jobs(db) if j["id"] in queued[1:]] == [
        (queued[1], None),
        (queued[2], None),
    ]
    assert rows(
        db,
        "select queue_name, locked_by from graphile_worker._private_job_queues order by queue_name",
    ) == [("q", POOL), ("r", POOL)]
    # The queues are locked now: the next batch takes nothing of them.
    again = await conn.fetch(
        S.fetch(10, with_flags=False, app_time=False),
        "sgpool-other0000000000",
        await task_ids(conn),
    )
    assert again == []


async def test_batch_fetch_orders_by_priority_then_run_at_within_a_queue(
    db: psycopg.Connection, conn: asyncpg.Connection
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
        (row,) = await conn.fetch(
            S.fetch(500, with_flags=False, app_time=False), POOL, await task_ids(conn)
        )
        order.append(row["id"])
        await conn.fetchval(S.complete_queued_jobs, str(row["id"]), POOL)
    assert order == [urgent, early, late]


async def test_fetch_with_application_time(
    db: psycopg.Connection, conn: asyncpg.Connection
) -> None:
    add(db)
    query = S.fetch(1, with_flags=False, app_time=True)
    ids = await task_ids(conn)
    past = datetime.now(UTC) - timedelta(hours=1)
    assert await conn.fetch(query, POOL, ids, past) == []
    (row,) = await conn.fetch(query, POOL, ids, datetime.now(UTC) + timedelta(seconds=1))
    assert row["locked_at"] > datetime.now(UTC)


async def test_bulk_completion_is_guarded_by_the_owner(
    db: psycopg.Connection, conn: asyncpg.Connection
) -> None:
    plain = [add(db) for _ in range(2)]
    queued = [add(db, queue="q")]
    fetched = await conn.fetch(
        S.fetch(10, with_flags=False, app_time=False), POOL, await task_ids(conn)
    )
    assert len(fetched) == 3
    db.execute(
        "update graphile_worker._private_jobs set locked_by = 'other' where id = %s", (plain[1],)
    )
    completed = await conn.fetchval(S.complete_jobs, id_list(plain), POOL)
    assert recorded_ids(completed) == {plain[0]}  # the other one is fenced
    completed = await conn.fetchval(S.complete_queued_jobs, id_list(queued), POOL)
    assert recorded_ids(completed) == set(queued)
    assert [j["id"] for j in jobs(db)] == [plain[1]]
    assert db.execute("select locked_by from graphile_worker._private_job_queues").fetchall() == [
        (None,)
    ]


async def test_bulk_failure_with_replacement_payloads_and_permanent_flags(
    db: psycopg.Connection, conn: asyncpg.Connection
) -> None:
    first = add(db, '[{"a":1},{"a":2}]')
    second = add(db, '{"b":1}', queue="q")
    await conn.fetch(S.fetch(10, with_flags=False, app_time=False), POOL, await task_ids(conn))
    failed = await conn.fetchval(
        S.fail_jobs,
        POOL,
        id_list([first, second]),
        ["Batch failures:\nx", "ValueError: y"],
        ['[{"a":2}]', None],
        flag_list([False, True]),
    )
    assert recorded_ids(failed) == {first, second}
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
    db: psycopg.Connection, conn: asyncpg.Connection
) -> None:
    ids = [add(db), add(db, queue="q")]
    await conn.fetch(S.fetch(10, with_flags=False, app_time=False), POOL, await task_ids(conn))
    failed = await conn.fetch(
        S.fail_jobs_with_message, id_list(ids), "shutting down", "sgpool-other"
    )
    assert failed == []  # another pool's jobs are left alone
    failed = await conn.fetch(S.fail_jobs_with_message, id_list(ids), "shutting down", POOL)
    assert sorted(r["id"] for r in failed) == ids
    assert {(j["last_error"], j["attempts"], j["locked_by"]) for j in jobs(db)} == {
        ("shutting down", 1, None)
    }


async def test_returning_jobs_refunds_the_attempt(
    db: psycopg.Connection, conn: asyncpg.Connection
) -> None:
    ids = [add(db), add(db, queue="q")]
    db.execute("update graphile_worker._private_jobs set last_error = 'earlier'")
    await conn.fetch(S.fetch(10, with_flags=False, app_time=False), POOL, await task_ids(conn))
    before = {j["id"]: j["run_at"] for j in jobs(db)}
    assert await conn.fetchval(S.return_jobs, "sgpool-other", id_list(ids)) == 0
    assert await conn.fetchval(S.return_jobs, POOL, id_list(ids)) == 2
    for job in jobs(db):
        assert (job["attempts"], job["locked_by"], job["locked_at"]) == (0, None, None)
        assert job["run_at"] == before[job["id"]]
        assert job["last_error"] == "earlier"
    assert db.execute("select locked_by from graphile_worker._private_job_queues").fetchall() == [
        (None,)
    ]


@pytest.mark.parametrize("app_time", [False, True])
async def test_reset_locked(
    db: psycopg.Connection, conn: asyncpg.Connection, app_time: bool
) -> None:
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
    args = [datetime.now(UTC)] if app_time else []
    await conn.execute(S.reset_locked(app_time=app_time), *args)
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
        S.fetch(0, with_flags=False, app_time=False)


def test_statements_quote_the_schema() -> None:
    text = statements_for("Other$Schema").fetch(1, with_flags=True, app_time=True)
    assert '"Other$Schema"._private_jobs' in text
    assert "$4::timestamptz" in text
