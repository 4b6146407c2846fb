"""The job store contract: one test body per behaviour of the
:class:`~sqlalchemy_graphile._store.JobStore` protocol, run on every store.

* ``fake``: the in-memory store of the unit tests (:mod:`tests._fakes.jobs`), no database;
* ``asyncpg``: :class:`AsyncpgJobStore` on a pool, each call a transaction of its own;
* ``sqlalchemy_sync`` / ``sqlalchemy_async``: :class:`SqlAlchemyJobStore` on a psycopg 3
  ``Connection`` / an asyncpg ``AsyncConnection``, every call inside one open transaction.

Two stores on one database play two workers (``store`` and ``other``, two pool ids). Times
are compared with the store's own clock (:meth:`Harness.now`): the fake's clock, the
database's ``now()`` (per call on asyncpg, the transaction's start on SQLAlchemy); time
travel goes through the ``now=`` of ``fetch`` and ``reset_stale_locks``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Connection, NullPool, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._job_input import NewJob, from_raw
from sqlalchemy_graphile._store import Failure, FetchedJob, JobStore, TaskIds
from sqlalchemy_graphile._store._asyncpg import AsyncpgJobStore
from sqlalchemy_graphile._store._sqlalchemy import SqlAlchemyJobStore
from sqlalchemy_graphile.job import Job
from sqlalchemy_graphile.job_spec import JobKeyMode, JobSpec
from tests._fakes.jobs import FakeDatabase

STORES = ("fake", "asyncpg", "sqlalchemy_sync", "sqlalchemy_async")
CATALOG = catalog_for("graphile_worker")
#: Two times the database wrote compare equal to the microsecond; computed backoffs are
#: rounded to it on both sides.
TOLERANCE = timedelta(milliseconds=1)


@dataclass
class Harness:
    """Two stores on one database (pool ids ``pool-a`` and ``pool-b``), the stores' clock,
    and a way to put jobs in that does not depend on the store's own adds."""

    kind: str
    store: JobStore
    other: JobStore
    now: Callable[[], Awaitable[datetime]]
    _seed: Callable[[Sequence[NewJob]], Awaitable[list[Job]]]

    async def add(self, identifier: str = "task", payload: Any = None, **spec: Any) -> Job:
        """Put one job in (``spec``: :class:`JobSpec` fields)."""
        return (await self._seed([from_raw(identifier, payload, JobSpec(**spec))]))[0]

    async def tasks(self, *identifiers: str) -> TaskIds:
        return await self.store.task_ids(identifiers or ("task",))

    async def job(self, job_id: int) -> Job | None:
        found = await self.store.jobs([job_id])
        return found[0].job if found else None


def adds(test: Callable[[Harness], Awaitable[None]]) -> Callable[[Harness], Awaitable[None]]:
    """Mark a test of the stores' adds: an expected failure on ``AsyncpgJobStore`` for as
    long as its adds raise :class:`NotImplementedError`."""

    @functools.wraps(test)
    async def run(stores: Harness) -> None:
        try:
            await test(stores)
        except NotImplementedError:
            if stores.kind != "asyncpg":
                raise
            pytest.xfail("AsyncpgJobStore does not add jobs yet")

    return run


def _fake() -> Harness:
    database = FakeDatabase()
    store = database.store("pool-a")

    async def now() -> datetime:
        return database.clock()

    async def seed(jobs: Sequence[NewJob]) -> list[Job]:
        return await store.add_jobs(jobs)

    return Harness("fake", store, database.store("pool-b"), now, seed)


async def _sqlalchemy(connection: Connection | AsyncConnection, kind: str) -> Harness:
    store = SqlAlchemyJobStore(connection, CATALOG, "pool-a")

    async def now() -> datetime:
        when: datetime = await store.run(lambda c: c.execute(text("select now()")).scalar_one())
        return when

    async def seed(jobs: Sequence[NewJob]) -> list[Job]:
        return await store.add_jobs(jobs)

    return Harness(kind, store, SqlAlchemyJobStore(connection, CATALOG, "pool-b"), now, seed)


@pytest.fixture(params=STORES)
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    kind: str = request.param
    if kind == "fake":
        yield _fake()
    elif kind == "sqlalchemy_sync":
        engine = request.getfixturevalue("sync_engine")
        with engine.connect() as connection, connection.begin():
            yield await _sqlalchemy(connection, kind)
    elif kind == "sqlalchemy_async":
        async_engine = _async_engine(request.getfixturevalue("db_url"))
        try:
            async with async_engine.connect() as connection, connection.begin():
                yield await _sqlalchemy(connection, kind)
        finally:
            await async_engine.dispose()
    else:
        db_url = request.getfixturevalue("db_url")
        async_engine = _async_engine(db_url)
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:

            async def now() -> datetime:
                when: datetime = await pool.fetchval("select now()")
                return when

            async def seed(jobs: Sequence[NewJob]) -> list[Job]:
                async with async_engine.begin() as connection:
                    return await SqlAlchemyJobStore(connection, CATALOG, "seed").add_jobs(jobs)

            yield Harness(
                kind,
                AsyncpgJobStore(pool, CATALOG, "pool-a"),
                AsyncpgJobStore(pool, CATALOG, "pool-b"),
                now,
                seed,
            )
        finally:
            await pool.close()
            await async_engine.dispose()


def _async_engine(db_url: str) -> AsyncEngine:
    # Made here: an async fixture cannot be asked for by name from another async fixture.
    return create_async_engine(
        db_url.replace("postgresql://", "postgresql+asyncpg://", 1), poolclass=NullPool
    )


def ids(fetched: Sequence[FetchedJob]) -> list[int]:
    return [job.id for job in fetched]


def close_to(actual: datetime, expected: datetime) -> bool:
    return abs(actual - expected) <= TOLERANCE


def seconds(exponent: int) -> timedelta:
    return timedelta(seconds=math.exp(exponent))


# -- task ids -----------------------------------------------------------------------------


async def test_task_ids_register_the_identifiers_unless_told_not_to(stores: Harness) -> None:
    unregistered = await stores.store.task_ids(["a", "b"], register=False)
    assert unregistered.identifier_by_id == {}
    assert unregistered.ids == ""

    registered = await stores.store.task_ids(["b", "a"])
    assert sorted(registered.identifier_by_id.values()) == ["a", "b"]
    assert registered.ids == ",".join(map(str, sorted(registered.identifier_by_id)))

    again = await stores.other.task_ids(["a", "c"], register=False)
    assert list(again.identifier_by_id.values()) == ["a"]


# -- fetching -----------------------------------------------------------------------------


async def test_a_fetch_locks_the_job_for_the_pool_and_counts_the_attempt(stores: Harness) -> None:
    added = await stores.add(payload={"n": 1}, max_attempts=3, priority=2)
    tasks = await stores.tasks()

    fetched = await stores.store.fetch(tasks, 1)

    assert ids(fetched) == [added.id]
    job = fetched[0].job
    assert (job.task_identifier, job.queue_name, job.payload) == ("task", None, {"n": 1})
    assert (job.attempts, job.max_attempts, job.priority) == (1, 3, 2)
    assert job.locked_by == "pool-a"
    assert job.locked_at is not None
    assert fetched[0].queue_id is None
    stored = await stores.job(added.id)
    assert stored is not None
    assert (stored.attempts, stored.locked_by) == (1, "pool-a")
    assert await stores.other.fetch(tasks, 1) == []


async def test_jobs_come_by_priority_then_run_at(stores: Harness) -> None:
    start = await stores.now()
    late = await stores.add(run_at=start - timedelta(minutes=1))
    early = await stores.add(run_at=start - timedelta(minutes=2))
    urgent = await stores.add(run_at=start - timedelta(seconds=1), priority=-5)
    lazy = await stores.add(run_at=start - timedelta(minutes=3), priority=5)
    tasks = await stores.tasks()

    order = [ids(await stores.store.fetch(tasks, 1)) for _ in range(5)]

    assert order == [[urgent.id], [early.id], [late.id], [lazy.id], []]


async def test_a_batch_takes_the_best_jobs(stores: Harness) -> None:
    start = await stores.now()
    jobs = [await stores.add(run_at=start - timedelta(minutes=m)) for m in range(5)]
    tasks = await stores.tasks()

    batch = await stores.store.fetch(tasks, 3)

    assert sorted(ids(batch)) == sorted(job.id for job in jobs[2:])
    assert all(job.job.attempts == 1 and job.job.locked_by == "pool-a" for job in batch)
    assert sorted(ids(await stores.other.fetch(tasks, 10))) == sorted(j.id for j in jobs[:2])


async def test_jobs_due_later_wait_until_then(stores: Harness) -> None:
    start = await stores.now()
    due = start + timedelta(hours=1)
    job = await stores.add(run_at=due)
    tasks = await stores.tasks()

    assert await stores.store.fetch(tasks, 1) == []
    assert await stores.store.fetch(tasks, 1, now=due - timedelta(seconds=1)) == []
    fetched = await stores.store.fetch(tasks, 1, now=due)

    assert ids(fetched) == [job.id]
    assert fetched[0].job.locked_at == due


async def test_only_the_asked_tasks_run(stores: Harness) -> None:
    wanted = await stores.add("wanted")
    await stores.add("other")

    fetched = await stores.store.fetch(await stores.tasks("wanted"), 10)

    assert ids(fetched) == [wanted.id]
    assert fetched[0].job.task_identifier == "wanted"


async def test_forbidden_flags_keep_jobs_back(stores: Harness) -> None:
    plain = await stores.add()
    await stores.add(flags=("a",))
    flagged_b = await stores.add(flags=("b", "c"))
    tasks = await stores.tasks()

    fetched = await stores.store.fetch(tasks, 10, forbidden_flags=["a", "x"])

    assert sorted(ids(fetched)) == [plain.id, flagged_b.id]
    flags = {job.id: job.job.flags for job in fetched}
    assert flags == {plain.id: None, flagged_b.id: {"b": True, "c": True}}


async def test_jobs_without_attempts_left_are_not_fetched(stores: Harness) -> None:
    job = await stores.add(max_attempts=1)
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)
    assert await stores.store.fail([Failure(fetched[0], "boom")]) == {job.id}

    later = await stores.now() + timedelta(days=1)
    assert await stores.store.fetch(tasks, 1, now=later) == []
    stored = await stores.job(job.id)
    assert stored is not None
    assert (stored.attempts, stored.max_attempts) == (1, 1)


async def test_a_named_queue_runs_one_job_at_a_time(stores: Harness) -> None:
    start = await stores.now()
    queued = [
        await stores.add(queue_name="q", run_at=start - timedelta(minutes=10 - m)) for m in range(3)
    ]
    free = [await stores.add(run_at=start - timedelta(minutes=1)) for _ in range(2)]
    tasks = await stores.tasks()

    batch = await stores.store.fetch(tasks, 10)

    assert sorted(ids(batch)) == sorted([queued[0].id, *(job.id for job in free)])
    head = next(job for job in batch if job.id == queued[0].id)
    assert head.queue_id is not None
    assert head.job.queue_name == "q"
    # The queue is locked: neither pool gets its other jobs.
    assert await stores.other.fetch(tasks, 10) == []
    assert await stores.store.fetch(tasks, 1) == []

    assert await stores.store.complete([head]) == {queued[0].id}
    assert ids(await stores.other.fetch(tasks, 10)) == [queued[1].id]


async def test_a_one_job_fetch_skips_a_locked_queue(stores: Harness) -> None:
    start = await stores.now()
    first = await stores.add(queue_name="q", run_at=start - timedelta(minutes=2))
    await stores.add(queue_name="q", run_at=start - timedelta(minutes=1))
    free = await stores.add(run_at=start)
    tasks = await stores.tasks()

    assert ids(await stores.store.fetch(tasks, 1)) == [first.id]
    assert ids(await stores.other.fetch(tasks, 1)) == [free.id]
    assert await stores.other.fetch(tasks, 1) == []


async def test_a_bad_batch_size_is_a_value_error(stores: Harness) -> None:
    tasks = await stores.tasks()
    for size in (0, -1, True):
        with pytest.raises(ValueError, match="batch size"):
            await stores.store.fetch(tasks, size)


# -- completing ---------------------------------------------------------------------------


async def test_complete_deletes_the_jobs_the_pool_holds(stores: Harness) -> None:
    jobs = [await stores.add() for _ in range(3)]
    tasks = await stores.tasks()
    batch = await stores.store.fetch(tasks, 2)

    assert await stores.store.complete(batch) == set(ids(batch))

    left = await stores.store.jobs([job.id for job in jobs])
    assert len(left) == 1
    assert left[0].id not in ids(batch)
    assert await stores.store.complete([]) == set()


async def test_complete_by_another_owner_is_fenced(stores: Harness) -> None:
    job = await stores.add(queue_name="q")
    await stores.add(queue_name="q")
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)

    assert await stores.other.complete(fetched) == set()

    stored = await stores.job(job.id)
    assert stored is not None
    assert stored.locked_by == "pool-a"
    # The queue stays locked by its owner too.
    assert await stores.other.fetch(tasks, 1) == []
    assert await stores.store.complete(fetched) == {job.id}


async def test_a_job_swept_and_fetched_again_is_fenced_from_its_first_owner(
    stores: Harness,
) -> None:
    start = await stores.now()
    job = await stores.add(run_at=start - timedelta(hours=6))
    tasks = await stores.tasks()
    first = await stores.store.fetch(tasks, 1, now=start - timedelta(hours=5))
    await stores.store.reset_stale_locks(now=start)
    second = await stores.other.fetch(tasks, 1, now=start + timedelta(seconds=1))
    assert ids(second) == [job.id]
    assert second[0].job.attempts == 2

    assert await stores.store.complete(first) == set()
    assert await stores.store.fail([Failure(first[0], "late")]) == set()
    assert await stores.store.give_back([job.id]) == 0
    assert await stores.store.fail_held([job.id], "stopping") == []

    stored = await stores.job(job.id)
    assert stored is not None
    assert (stored.locked_by, stored.attempts, stored.last_error) == ("pool-b", 2, None)
    assert await stores.other.complete(second) == {job.id}


# -- failing ------------------------------------------------------------------------------


async def test_a_failure_is_retried_with_exponential_backoff(stores: Harness) -> None:
    start = await stores.now()
    due = start + timedelta(hours=1)  # later than now(): the backoff starts from run_at
    job = await stores.add(run_at=due, payload={"n": 1})
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1, now=due)

    assert await stores.store.fail([Failure(fetched[0], "boom")]) == {job.id}

    stored = await stores.job(job.id)
    assert stored is not None
    assert close_to(stored.run_at, due + seconds(1))
    assert (stored.attempts, stored.last_error, stored.locked_by, stored.locked_at) == (
        1,
        "boom",
        None,
        None,
    )
    assert stored.payload == {"n": 1}


async def test_the_backoff_starts_from_now_when_run_at_has_passed(stores: Harness) -> None:
    start = await stores.now()
    job = await stores.add(run_at=start - timedelta(hours=1))
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)

    before = await stores.now()
    await stores.store.fail([Failure(fetched[0], "boom")])
    after = await stores.now()

    stored = await stores.job(job.id)
    assert stored is not None
    assert before + seconds(1) - TOLERANCE <= stored.run_at <= after + seconds(1) + TOLERANCE


async def test_the_backoff_stops_growing_after_ten_attempts(stores: Harness) -> None:
    start = await stores.now()
    job = await stores.add(run_at=start + timedelta(hours=1))
    tasks = await stores.tasks()
    due = job.run_at
    delays = []
    for _ in range(12):
        fetched = await stores.store.fetch(tasks, 1, now=due)
        assert ids(fetched) == [job.id]
        await stores.store.fail([Failure(fetched[0], "again")])
        stored = await stores.job(job.id)
        assert stored is not None
        delays.append(stored.run_at - due)
        due = stored.run_at

    for attempt, delay in enumerate(delays, start=1):
        assert abs(delay - seconds(min(attempt, 10))) <= TOLERANCE, attempt


async def test_a_permanent_failure_uses_up_the_attempts(stores: Harness) -> None:
    job = await stores.add(max_attempts=5)
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)

    assert await stores.store.fail([Failure(fetched[0], "no", permanent=True)]) == {job.id}

    stored = await stores.job(job.id)
    assert stored is not None
    assert (stored.attempts, stored.max_attempts, stored.last_error) == (5, 5, "no")
    assert stored.is_permanently_failed


async def test_a_failure_can_replace_the_payload(stores: Harness) -> None:
    job = await stores.add(payload=[{"item": 1}, {"item": 2}])
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)

    replacement = json.dumps([{"item": 2}])
    await stores.store.fail([Failure(fetched[0], "one item failed", replacement)])

    stored = await stores.job(job.id)
    assert stored is not None
    assert stored.payload == [{"item": 2}]


async def test_many_failures_at_once(stores: Harness) -> None:
    start = await stores.now()
    due = start + timedelta(hours=1)
    queued = await stores.add(queue_name="q", run_at=due)
    await stores.add(queue_name="q", run_at=due + timedelta(seconds=1))
    plain = await stores.add(run_at=due, max_attempts=7)
    tasks = await stores.tasks()
    batch = await stores.store.fetch(tasks, 10, now=due)
    by_id = {job.id: job for job in batch}
    assert set(by_id) == {queued.id, plain.id}

    recorded = await stores.store.fail(
        [
            Failure(by_id[queued.id], "queued failed", json.dumps({"new": True})),
            Failure(by_id[plain.id], "plain failed", permanent=True),
        ]
    )

    assert recorded == {queued.id, plain.id}
    stored = {job.id: job.job for job in await stores.store.jobs([queued.id, plain.id])}
    assert stored[queued.id].payload == {"new": True}
    assert stored[queued.id].last_error == "queued failed"
    assert close_to(stored[queued.id].run_at, due + seconds(1))
    assert (stored[plain.id].attempts, stored[plain.id].last_error) == (7, "plain failed")
    # The queue was unlocked: its next job is runnable.
    later = due + timedelta(seconds=2)
    assert len(await stores.other.fetch(tasks, 10, now=later)) == 1


async def test_a_failure_by_another_owner_records_nothing(stores: Harness) -> None:
    job = await stores.add()
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)

    assert await stores.other.fail([Failure(fetched[0], "not mine")]) == set()

    stored = await stores.job(job.id)
    assert stored is not None
    assert (stored.locked_by, stored.last_error) == ("pool-a", None)


async def test_a_failure_unlocks_the_queue(stores: Harness) -> None:
    start = await stores.now()
    first = await stores.add(queue_name="q", run_at=start - timedelta(minutes=2))
    second = await stores.add(queue_name="q", run_at=start - timedelta(minutes=1))
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)
    assert ids(fetched) == [first.id]

    await stores.store.fail([Failure(fetched[0], "boom")])

    assert ids(await stores.other.fetch(tasks, 1)) == [second.id]


# -- releasing and fetching in one call --------------------------------------------------


async def test_release_and_fetch_completes_and_fetches_the_next_job(stores: Harness) -> None:
    start = await stores.now()
    first = await stores.add(run_at=start - timedelta(minutes=2))
    second = await stores.add(run_at=start - timedelta(minutes=1))
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)

    recorded, next_job = await stores.store.release_and_fetch(fetched[0], tasks)

    assert recorded
    assert next_job is not None
    assert (next_job.id, next_job.job.attempts, next_job.job.locked_by) == (
        second.id,
        1,
        "pool-a",
    )
    assert await stores.job(first.id) is None
    assert await stores.store.release_and_fetch(next_job, tasks) == (True, None)
    assert await stores.store.jobs([first.id, second.id]) == []


async def test_release_and_fetch_records_a_failure(stores: Harness) -> None:
    start = await stores.now()
    due = start + timedelta(hours=1)
    failing = await stores.add(run_at=due, max_attempts=3)
    waiting = await stores.add(run_at=due + timedelta(seconds=1))
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1, now=due)
    replacement = json.dumps({"replaced": True})

    recorded, next_job = await stores.store.release_and_fetch(
        Failure(fetched[0], "boom", replacement), tasks, now=due + timedelta(seconds=1)
    )

    assert recorded
    assert next_job is not None
    assert next_job.id == waiting.id
    failed = await stores.job(failing.id)
    assert failed is not None
    assert (failed.attempts, failed.last_error, failed.locked_by) == (1, "boom", None)
    assert failed.payload == {"replaced": True}
    assert close_to(failed.run_at, due + seconds(1))

    again = await stores.store.fetch(tasks, 1, now=failed.run_at)
    permanent = Failure(again[0], "no", permanent=True)
    assert await stores.store.release_and_fetch(permanent, tasks) == (True, None)
    dead = await stores.job(failing.id)
    assert dead is not None
    assert (dead.attempts, dead.last_error) == (3, "no")


async def test_release_and_fetch_leaves_the_released_queue_to_the_next_fetch(
    stores: Harness,
) -> None:
    start = await stores.now()
    head = await stores.add(queue_name="q", run_at=start - timedelta(minutes=2))
    follower = await stores.add(queue_name="q", run_at=start - timedelta(minutes=1))
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)
    assert ids(fetched) == [head.id]

    assert await stores.store.release_and_fetch(fetched[0], tasks) == (True, None)

    # The queue was unlocked by the release: the next fetch takes its next job.
    assert ids(await stores.other.fetch(tasks, 1)) == [follower.id]


async def test_release_and_fetch_respects_flags_time_and_tasks(stores: Harness) -> None:
    start = await stores.now()
    released = await stores.add()
    await stores.add(flags=("no",))
    await stores.add("other")
    later = await stores.add(run_at=start + timedelta(hours=1))
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1, forbidden_flags=["no"])
    assert ids(fetched) == [released.id]

    nothing = await stores.store.release_and_fetch(fetched[0], tasks, forbidden_flags=["no"])
    assert nothing == (True, None)
    flagged = await stores.store.fetch(tasks, 1)
    recorded, next_job = await stores.store.release_and_fetch(
        flagged[0], tasks, now=start + timedelta(hours=1)
    )

    assert recorded
    assert next_job is not None
    assert next_job.id == later.id
    assert next_job.job.locked_at == start + timedelta(hours=1)


async def test_release_and_fetch_by_another_owner_is_fenced_but_still_fetches(
    stores: Harness,
) -> None:
    start = await stores.now()
    held = await stores.add(run_at=start - timedelta(minutes=1))
    free = await stores.add(run_at=start)
    tasks = await stores.tasks()
    fetched = await stores.store.fetch(tasks, 1)
    assert ids(fetched) == [held.id]

    recorded, next_job = await stores.other.release_and_fetch(
        Failure(fetched[0], "not mine"), tasks
    )

    assert not recorded
    assert next_job is not None
    assert (next_job.id, next_job.job.locked_by) == (free.id, "pool-b")
    stored = await stores.job(held.id)
    assert stored is not None
    assert (stored.locked_by, stored.last_error) == ("pool-a", None)


# -- fail_held ----------------------------------------------------------------------------


async def test_fail_held_fails_what_a_stopping_pool_still_holds(stores: Harness) -> None:
    start = await stores.now()
    due = start + timedelta(hours=1)
    queued = await stores.add(queue_name="q", run_at=due)
    follower = await stores.add(queue_name="q", run_at=due + timedelta(seconds=1))
    plain = await stores.add(run_at=due)
    tasks = await stores.tasks()
    batch = await stores.store.fetch(tasks, 10, now=due)
    assert sorted(ids(batch)) == sorted([queued.id, plain.id])

    assert await stores.other.fail_held([queued.id, plain.id], "not mine") == []
    failed = await stores.store.fail_held([queued.id, plain.id, 10**9], "worker stopped")

    assert sorted(failed) == sorted([queued.id, plain.id])
    for job in await stores.store.jobs(failed):
        assert (job.job.attempts, job.job.last_error, job.job.locked_by) == (
            1,
            "worker stopped",
            None,
        )
        assert close_to(job.job.run_at, due + seconds(1))
    later = due + timedelta(seconds=2)
    assert ids(await stores.other.fetch(await stores.tasks(), 1, now=later)) == [follower.id]


# -- giving back --------------------------------------------------------------------------


async def test_give_back_refunds_the_attempt_and_keeps_run_at_and_last_error(
    stores: Harness,
) -> None:
    start = await stores.now()
    job = await stores.add(queue_name="q", run_at=start + timedelta(hours=1))
    tasks = await stores.tasks()
    first = await stores.store.fetch(tasks, 1, now=job.run_at)
    await stores.store.fail([Failure(first[0], "boom")])
    failed = await stores.job(job.id)
    assert failed is not None
    again = await stores.store.fetch(tasks, 1, now=failed.run_at)
    assert again[0].job.attempts == 2

    assert await stores.other.give_back([job.id]) == 0
    assert await stores.store.give_back([job.id, 10**9]) == 1

    stored = await stores.job(job.id)
    assert stored is not None
    assert (stored.attempts, stored.last_error, stored.locked_by, stored.locked_at) == (
        1,
        "boom",
        None,
        None,
    )
    assert stored.run_at == failed.run_at
    # The queue was unlocked with the job.
    assert ids(await stores.other.fetch(tasks, 1, now=failed.run_at)) == [job.id]


async def test_give_back_of_nothing_is_zero(stores: Harness) -> None:
    assert await stores.store.give_back([]) == 0


# -- reading ------------------------------------------------------------------------------


async def test_jobs_reads_the_rows_by_id(stores: Harness) -> None:
    b = await stores.add("b", {"x": 1}, queue_name="q", job_key="k", flags=("f",))
    a = await stores.add("a")

    found = await stores.store.jobs([b.id, 10**9, a.id])

    assert ids(found) == sorted([a.id, b.id])
    by_id = {job.id: job for job in found}
    read = by_id[b.id]
    assert read.queue_id is not None
    assert read.job == b
    assert by_id[a.id].queue_id is None
    assert await stores.store.jobs([]) == []


# -- stale locks --------------------------------------------------------------------------


async def test_locks_older_than_four_hours_are_cleared(stores: Harness) -> None:
    start = await stores.now()
    stale = await stores.add(queue_name="q", run_at=start - timedelta(hours=6))
    await stores.add(queue_name="q", run_at=start + timedelta(hours=1))
    fresh = await stores.add(run_at=start - timedelta(hours=6))
    tasks = await stores.tasks()
    old = await stores.store.fetch(tasks, 1, now=start - timedelta(hours=4, minutes=1))
    recent = await stores.store.fetch(tasks, 1, now=start - timedelta(hours=3, minutes=59))
    assert (ids(old), ids(recent)) == ([stale.id], [fresh.id])

    await stores.store.reset_stale_locks(now=start)

    read = {job.id: job.job for job in await stores.store.jobs([stale.id, fresh.id])}
    assert (read[stale.id].locked_by, read[stale.id].locked_at) == (None, None)
    assert read[stale.id].attempts == 1
    assert read[stale.id].run_at == start
    assert read[fresh.id].locked_by == "pool-a"
    # The stale job is runnable at once, and its queue lock was cleared too.
    assert ids(await stores.other.fetch(tasks, 1, now=start)) == [stale.id]


async def test_reset_without_now_uses_the_stores_clock(stores: Harness) -> None:
    job = await stores.add()
    tasks = await stores.tasks()
    await stores.store.fetch(tasks, 1)

    await stores.store.reset_stale_locks()

    stored = await stores.job(job.id)
    assert stored is not None
    assert stored.locked_by == "pool-a"


# -- adding -------------------------------------------------------------------------------


@adds
async def test_add_job_and_add_jobs_without_keys(stores: Harness) -> None:
    store = stores.store
    start = await stores.now()
    spec = JobSpec(queue_name="q", run_at=start, max_attempts=3, priority=4, flags=("f",))

    one = await store.add_job(from_raw("a", {"n": 1}, spec))
    many = await store.add_jobs([from_raw("b", {"n": 2}), from_raw("a", [1, 2])])

    assert (one.task_identifier, one.queue_name, one.payload) == ("a", "q", {"n": 1})
    assert (one.run_at, one.max_attempts, one.priority, one.flags) == (start, 3, 4, {"f": True})
    assert (one.attempts, one.revision, one.key, one.locked_by) == (0, 0, None, None)
    assert [(job.task_identifier, job.payload) for job in many] == [("b", {"n": 2}), ("a", [1, 2])]
    assert (many[0].max_attempts, many[0].priority, many[0].flags) == (25, 0, None)
    assert len({one.id, *(job.id for job in many)}) == 3
    read = await store.jobs([one.id])
    assert read[0].job == one


@adds
async def test_a_key_replaces_its_pending_job(stores: Harness) -> None:
    store = stores.store
    start = await stores.now()
    first = await store.add_job(from_raw("a", {"v": 1}, JobSpec(job_key="k", priority=1)))
    tasks = await stores.tasks("a")
    fetched = await stores.store.fetch(tasks, 1)
    await stores.store.fail([Failure(fetched[0], "boom")])

    later = start + timedelta(hours=2)
    spec = JobSpec(job_key="k", run_at=later, queue_name="q", max_attempts=9)
    second = await store.add_job(from_raw("b", {"v": 2}, spec))

    assert second.id == first.id
    assert (second.task_identifier, second.queue_name, second.payload) == ("b", "q", {"v": 2})
    assert (second.run_at, second.max_attempts, second.priority) == (later, 9, 0)
    assert (second.attempts, second.last_error, second.revision) == (0, None, 1)


@adds
async def test_a_key_held_by_a_running_job_goes_to_a_new_job(stores: Harness) -> None:
    store = stores.store
    first = await store.add_job(from_raw("a", {"v": 1}, JobSpec(job_key="k", max_attempts=4)))
    fetched = await stores.store.fetch(await stores.tasks("a"), 1)
    assert ids(fetched) == [first.id]

    second = await store.add_job(from_raw("a", {"v": 2}, JobSpec(job_key="k")))

    assert second.id != first.id
    assert (second.key, second.revision, second.payload) == ("k", 0, {"v": 2})
    old = await stores.job(first.id)
    assert old is not None
    assert (old.key, old.attempts, old.locked_by) == (None, 4, "pool-a")


@adds
async def test_preserve_run_at_keeps_the_run_at_of_a_pending_job(stores: Harness) -> None:
    store = stores.store
    start = await stores.now()
    due = start + timedelta(hours=1)
    first = await store.add_job(from_raw("a", None, JobSpec(job_key="k", run_at=due)))
    spec = JobSpec(
        job_key="k", run_at=due + timedelta(hours=1), job_key_mode=JobKeyMode.PRESERVE_RUN_AT
    )

    kept = await store.add_job(from_raw("a", {"v": 2}, spec))
    kept_in_bulk = await store.add_jobs(
        [from_raw("a", {"v": 3}, JobSpec(job_key="k", run_at=start))], preserve_run_at=True
    )
    replaced = await store.add_jobs([from_raw("a", {"v": 4}, JobSpec(job_key="k", run_at=start))])

    assert kept.id == first.id
    assert (kept.run_at, kept.payload, kept.revision) == (due, {"v": 2}, 1)
    assert (kept_in_bulk[0].run_at, kept_in_bulk[0].revision) == (due, 2)
    assert (replaced[0].run_at, replaced[0].payload, replaced[0].revision) == (start, {"v": 4}, 3)


@adds
async def test_unsafe_dedupe_keeps_the_existing_job(stores: Harness) -> None:
    store = stores.store
    first = await store.add_job(from_raw("a", {"v": 1}, JobSpec(job_key="k")))
    spec = JobSpec(job_key="k", job_key_mode=JobKeyMode.UNSAFE_DEDUPE, priority=7)

    again = await store.add_job(from_raw("b", {"v": 2}, spec))
    fresh = await store.add_job(
        from_raw("b", {"v": 3}, JobSpec(job_key="other", job_key_mode=JobKeyMode.UNSAFE_DEDUPE))
    )

    assert again.id == first.id
    assert (again.task_identifier, again.payload, again.priority, again.revision) == (
        "a",
        {"v": 1},
        0,
        1,
    )
    assert (fresh.key, fresh.payload, fresh.revision) == ("other", {"v": 3}, 0)


@adds
async def test_keyed_batch_payloads_accumulate(stores: Harness) -> None:
    store = stores.store
    first = await store.add_job(from_raw("a", [{"i": 1}], JobSpec(job_key="batch")))

    second = await store.add_job(from_raw("a", [{"i": 2}, {"i": 3}], JobSpec(job_key="batch")))

    assert second.id == first.id
    assert second.payload == [{"i": 1}, {"i": 2}, {"i": 3}]
