"""The releasers on the in-memory job store: direct writes, batched windows, fencing, a
write that fails, release-and-fetch, and failing the jobs a stopping pool holds."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sqlalchemy_graphile._store import FetchedJob
from sqlalchemy_graphile.worker._fetch import DirectJobSource
from sqlalchemy_graphile.worker._release import (
    BatchedReleaser,
    DirectReleaser,
    fail_jobs_with_message,
)
from sqlalchemy_graphile.worker._task_ids import TaskIdentifiers
from tests._fakes.jobs import FakeDatabase, FakeJobStore, backoff


@pytest.fixture
def database() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def store(database: FakeDatabase) -> FakeJobStore:
    return database.store("pool")


async def fetch(store: FakeJobStore, count: int) -> list[FetchedJob]:
    fetched = await store.fetch(await store.task_ids(["task"]), count)
    assert len(fetched) == count
    return fetched


def take_over(database: FakeDatabase, job: FetchedJob) -> None:
    """Make ``job`` locked by another pool, as after a sweep freed it and that pool fetched
    it (the other jobs keep their locks)."""
    row = database.rows[job.id]
    row.locked_by = "other"
    row.attempts += 1


# -- direct -------------------------------------------------------------------------------


async def test_a_direct_completion_deletes_the_job_and_reports_its_queue(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    job = database.add(queue_name="q")
    released: list[int] = []
    releaser = DirectReleaser(store, queues_released=released.append)
    [fetched] = await fetch(store, 1)

    written = await releaser.complete(fetched)

    assert written.result() is True
    assert database.read(job.id) is None
    assert released == [1]


async def test_a_direct_failure_schedules_the_retry(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    job = database.add(payload=[1, 2])
    releaser = DirectReleaser(store)
    [fetched] = await fetch(store, 1)

    written = await releaser.fail(fetched, "boom", "[2]")

    assert written.result() is True
    stored = database.read(job.id)
    assert stored is not None
    assert (stored.last_error, stored.payload, stored.locked_by) == ("boom", [2], None)
    assert stored.run_at == backoff(database.clock(), job.run_at, 1)


async def test_a_direct_write_of_a_job_taken_over_is_fenced(
    database: FakeDatabase, store: FakeJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    job = database.add()
    releaser = DirectReleaser(store)
    [fetched] = await fetch(store, 1)
    take_over(database, fetched)

    with caplog.at_level(logging.WARNING, "sqlalchemy_graphile.worker"):
        completed = await releaser.complete(fetched)
        failed = await releaser.fail(fetched, "late", None, permanent=True)

    assert (completed.result(), failed.result()) == (False, False)
    stored = database.read(job.id)
    assert stored is not None
    assert (stored.locked_by, stored.attempts, stored.last_error) == ("other", 2, None)
    fenced = [r.getMessage() for r in caplog.records if "was fenced" in r.getMessage()]
    assert len(fenced) == 2
    assert f"job {job.id} (task)" in fenced[0]


# -- batched ------------------------------------------------------------------------------


async def test_completions_of_one_window_are_written_together(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    jobs = [database.add(queue_name=f"q{i}") for i in range(2)] + [database.add()]
    released: list[int] = []
    fatal: list[tuple[str, Exception]] = []
    releaser = BatchedReleaser(
        store,
        complete_delay=0.0,
        fail_delay=None,
        on_fatal=lambda action, error: fatal.append((action, error)),
        queues_released=released.append,
    )
    fetched = await fetch(store, 3)

    written = [await releaser.complete(job) for job in fetched]
    results = await asyncio.gather(*written)

    assert results == [True, True, True]
    assert [call for call in store.calls if call[0] == "complete"] == [
        ("complete", [job.id for job in fetched])
    ]
    assert all(database.read(job.id) is None for job in jobs)
    assert released == [2]
    assert fatal == []


async def test_a_fenced_job_in_a_window_is_the_only_one_not_recorded(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    for _ in range(3):
        database.add()
    releaser = BatchedReleaser(
        store, complete_delay=None, fail_delay=0.0, on_fatal=lambda _a, _e: None
    )
    fetched = await fetch(store, 3)
    take_over(database, fetched[1])

    written = [await releaser.fail(job, f"failed {job.id}", None) for job in fetched]
    results = await asyncio.gather(*written)

    assert results == [True, False, True]
    assert store.count("fail") == 1
    messages = [database.read(job.id) for job in fetched]
    assert [job.last_error if job else None for job in messages] == [
        f"failed {fetched[0].id}",
        None,
        f"failed {fetched[2].id}",
    ]


async def test_failures_of_one_window_keep_their_own_message_payload_and_permanence(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    queued = database.add(queue_name="q", max_attempts=5)
    plain = database.add(max_attempts=5)
    released: list[int] = []
    releaser = BatchedReleaser(
        store,
        complete_delay=None,
        fail_delay=0.0,
        on_fatal=lambda _a, _e: None,
        queues_released=released.append,
    )
    by_id = {job.id: job for job in await fetch(store, 2)}

    first = await releaser.fail(by_id[queued.id], "retry me", '{"v": 2}')
    second = await releaser.fail(by_id[plain.id], "give up", None, permanent=True)
    await asyncio.gather(first, second)

    retried, dead = database.read(queued.id), database.read(plain.id)
    assert retried is not None
    assert dead is not None
    assert (retried.last_error, retried.payload, retried.attempts) == ("retry me", {"v": 2}, 1)
    assert (dead.last_error, dead.attempts) == ("give up", 5)
    assert store.count("fail") == 1
    assert released == [1]


async def test_the_other_outcome_is_written_at_once(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    database.add()
    releaser = BatchedReleaser(
        store, complete_delay=3600.0, fail_delay=None, on_fatal=lambda _a, _e: None
    )
    [fetched] = await fetch(store, 1)

    written = await releaser.fail(fetched, "boom", None)

    assert written.done()
    assert written.result() is True
    await releaser.release()


async def test_release_writes_a_window_that_has_not_closed(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    job = database.add()
    releaser = BatchedReleaser(
        store, complete_delay=3600.0, fail_delay=3600.0, on_fatal=lambda _a, _e: None
    )
    [fetched] = await fetch(store, 1)

    written = await releaser.complete(fetched)
    assert not written.done()
    assert store.count("complete") == 0

    await releaser.release()

    assert written.result() is True
    assert database.read(job.id) is None


async def test_a_window_that_cannot_be_written_is_fatal_and_keeps_its_jobs_locked(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    for _ in range(2):
        database.add()
    fatal: list[tuple[str, Exception]] = []
    releaser = BatchedReleaser(
        store,
        complete_delay=0.0,
        fail_delay=None,
        on_fatal=lambda action, error: fatal.append((action, error)),
    )
    fetched = await fetch(store, 2)
    broken = ValueError("cannot write")
    store.fail_next("complete", broken)

    written = [await releaser.complete(job) for job in fetched]
    results = await asyncio.gather(*written, return_exceptions=True)

    assert results == [broken, broken]
    assert fatal == [("completeJob", broken)]
    stored = [database.read(job.id) for job in fetched]
    assert [job.locked_by if job else None for job in stored] == ["pool", "pool"]


# -- release and fetch --------------------------------------------------------------------


async def test_release_and_fetch_hands_the_next_job_to_the_source(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    first = database.add(queue_name="q")
    second = database.add(queue_name="r")
    released: list[int] = []
    releaser = DirectReleaser(store, queues_released=released.append)
    source = DirectJobSource(store, TaskIdentifiers(store, ["task"]), use_local_time=False)
    fetched = await source.get_job(None)
    assert fetched is not None
    assert fetched.id == first.id

    written, next_job = await releaser.release_and_fetch(fetched, None, source, None)

    assert written.result() is True
    assert next_job is not None
    assert next_job.id == second.id
    assert database.read(first.id) is None
    assert released == [1]
    assert store.count("release_and_fetch") == 1


async def test_release_and_fetch_after_the_source_is_released_only_releases(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    first = database.add()
    database.add()
    releaser = DirectReleaser(store)
    source = DirectJobSource(store, TaskIdentifiers(store, ["task"]), use_local_time=False)
    fetched = await source.get_job(None)
    assert fetched is not None
    await source.release()

    written, next_job = await releaser.release_and_fetch(fetched, None, source, None)

    assert (written.result(), next_job) == (True, None)
    assert database.read(first.id) is None
    assert store.count("release_and_fetch") == 0
    assert store.count("complete") == 1


# -- stopping -----------------------------------------------------------------------------


async def test_fail_jobs_with_message_fails_only_what_the_pool_holds(
    database: FakeDatabase, store: FakeJobStore
) -> None:
    for _ in range(3):
        database.add()
    fetched = await fetch(store, 3)
    take_over(database, fetched[2])

    failed = await fail_jobs_with_message(store, [job.id for job in fetched], "worker stopped")

    assert sorted(failed) == sorted(job.id for job in fetched[:2])
    for job in fetched[:2]:
        stored = database.read(job.id)
        assert stored is not None
        assert (stored.last_error, stored.locked_by, stored.attempts) == (
            "worker stopped",
            None,
            1,
        )
