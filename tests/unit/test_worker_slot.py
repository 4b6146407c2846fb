"""Worker slots on the in-memory job store: run-once and continuous loops, failures,
release-and-fetch chains, batched reports, fencing, fetch errors and failed writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from sqlalchemy_graphile import WorkerContext
from sqlalchemy_graphile._job_input import (
    from_batch,
    from_raw,
    from_raw_specs,
    from_task,
    from_tasks,
)
from sqlalchemy_graphile._store import Failure, FetchedJob
from sqlalchemy_graphile.events import WorkerEvent, WorkerEvents
from sqlalchemy_graphile.job import Job
from sqlalchemy_graphile.job_spec import JobSpec, RawJobSpec
from sqlalchemy_graphile.tasks import BatchTask, Task
from sqlalchemy_graphile.worker._fetch import DirectJobSource
from sqlalchemy_graphile.worker._release import (
    BatchedReleaser,
    DirectReleaser,
    JobReleaser,
    Written,
)
from sqlalchemy_graphile.worker._runner import TaskRunner
from sqlalchemy_graphile.worker._slot import Chain, FetchHealth, Slot
from sqlalchemy_graphile.worker._task_ids import TaskIdentifiers
from tests._fakes.jobs import FakeDatabase, FakeJobStore


@dataclass
class Log:
    """An extension: the jobs the task ran, and what it does while it runs."""

    ran: list[int] = field(default_factory=list)
    during: Callable[[int], None] = lambda _job_id: None


class Work(Task):
    IDENTIFIER: ClassVar[str] = "task"
    fail: bool = False

    async def run(self, ctx: WorkerContext) -> None:
        log = ctx.get_ext(Log)
        assert log is not None
        log.ran.append(ctx.job.id)
        log.during(ctx.job.id)
        if self.fail:
            raise RuntimeError("asked to fail")


class StoreAdder:
    """``ctx.add_job`` and friends, on the store (committed at once, like a worker's)."""

    def __init__(self, store: FakeJobStore) -> None:
        self._store = store

    async def add_job(self, task: Task, spec: JobSpec | None = None) -> Job:
        return await self._store.add_job(from_task(task, spec))

    async def add_jobs(self, jobs: Sequence[tuple[Task, JobSpec | None]]) -> list[Job]:
        return await self._store.add_jobs(from_tasks(jobs))

    async def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> Job:
        return await self._store.add_job(from_raw(identifier, payload, spec))

    async def add_raw_jobs(self, jobs: Sequence[RawJobSpec]) -> list[Job]:
        return await self._store.add_jobs(from_raw_specs(jobs))

    async def add_batch_job(self, items: Sequence[BatchTask], spec: JobSpec | None = None) -> Job:
        return await self._store.add_job(from_batch(items, spec))


@dataclass
class Setup:
    database: FakeDatabase
    store: FakeJobStore
    log: Log
    runner: TaskRunner
    events: WorkerEvents = field(default_factory=WorkerEvents)
    seen: list[WorkerEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events.on_any(self.seen.append)

    def names(self, *names: str) -> list[str]:
        return [event.name for event in self.seen if event.name in names]

    def source(self, *, continuous: bool) -> DirectJobSource:
        return DirectJobSource(
            self.store,
            TaskIdentifiers(self.store, ["task"]),
            use_local_time=False,
            continuous=continuous,
        )

    def slot(
        self,
        source: DirectJobSource,
        releaser: JobReleaser,
        *,
        continuous: bool = False,
        chain: Chain | None = None,
    ) -> Slot:
        async def no_flags() -> list[str] | None:
            return None

        return Slot(
            pool_id=self.store.pool_id,
            continuous=continuous,
            poll_interval=3600.0,
            source=source,
            releaser=releaser,
            runner=self.runner,
            events=self.events,
            forbidden_flags=no_flags,
            health=FetchHealth(),
            chain=chain,
        )


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    database = FakeDatabase()
    store = database.store("pool")
    log = Log()
    with ThreadPoolExecutor(max_workers=1) as executor:
        runner = TaskRunner(
            {"task": Work},
            extensions={Log: log},
            pool_id="pool",
            abort_signal=asyncio.Event(),
            adder=StoreAdder(store),
            executor=executor,
        )
        yield Setup(database, store, log, runner)


def chain_of(releaser: DirectReleaser, source: DirectJobSource) -> Chain:
    async def chain(
        job: FetchedJob, failure: Failure | None, flags: Sequence[str] | None
    ) -> tuple[Written, FetchedJob | None]:
        return await releaser.release_and_fetch(job, failure, source, flags)

    return chain


async def test_a_run_once_slot_runs_every_job_then_stops(setup: Setup) -> None:
    jobs = [setup.database.add(priority=priority) for priority in (2, 1, 3)]
    slot = setup.slot(setup.source(continuous=False), DirectReleaser(setup.store))

    await slot.run()

    assert setup.log.ran == [job.id for job in sorted(jobs, key=lambda job: job.priority)]
    assert setup.database.rows == {}
    assert setup.names("job:success", "worker:getJob:empty", "worker:stop") == [
        *["job:success"] * 3,
        "worker:getJob:empty",
        "worker:stop",
    ]
    assert slot.job is None


async def test_a_failed_job_is_recorded_and_reported(setup: Setup) -> None:
    job = setup.database.add(payload={"fail": True}, max_attempts=1)
    slot = setup.slot(setup.source(continuous=False), DirectReleaser(setup.store))

    await slot.run()

    stored = setup.database.read(job.id)
    assert stored is not None
    assert (stored.attempts, stored.last_error, stored.locked_by) == (
        1,
        "RuntimeError: asked to fail",
        None,
    )
    assert setup.names("job:success", "job:error", "job:failed", "job:complete") == [
        "job:error",
        "job:failed",
        "job:complete",
    ]


async def test_a_chained_slot_fetches_each_next_job_with_the_release(setup: Setup) -> None:
    jobs = [setup.database.add() for _ in range(3)]
    failing = setup.database.add(payload={"fail": True})
    source = setup.source(continuous=False)
    releaser = DirectReleaser(setup.store)
    slot = setup.slot(source, releaser, chain=chain_of(releaser, source))

    await slot.run()

    assert setup.log.ran == [job.id for job in jobs] + [failing.id]
    assert [job.id for job in jobs if setup.database.read(job.id) is not None] == []
    failed = setup.database.read(failing.id)
    assert failed is not None
    assert failed.last_error == "RuntimeError: asked to fail"
    # One fetch to start and one that found nothing; every release fetched the next job.
    assert (setup.store.count("fetch"), setup.store.count("release_and_fetch")) == (2, 4)
    assert setup.store.count("complete") + setup.store.count("fail") == 0
    assert setup.names("job:success", "job:error") == ["job:success"] * 3 + ["job:error"]


async def test_outcomes_of_a_batched_releaser_are_reported_once_written(setup: Setup) -> None:
    for _ in range(2):
        setup.database.add()
    releaser = BatchedReleaser(
        setup.store, complete_delay=3600.0, fail_delay=None, on_fatal=lambda _a, _e: None
    )
    slot = setup.slot(setup.source(continuous=False), releaser)

    await slot.run()
    assert setup.names("job:success") == []
    assert setup.store.count("complete") == 0

    await releaser.release()

    assert setup.names("job:success") == ["job:success"] * 2
    assert setup.store.count("complete") == 1
    assert setup.database.rows == {}


async def test_a_job_taken_over_while_it_ran_is_reported_fenced(setup: Setup) -> None:
    job = setup.database.add()

    def take_over(job_id: int) -> None:
        setup.database.rows[job_id].locked_by = "other"

    setup.log.during = take_over
    slot = setup.slot(setup.source(continuous=False), DirectReleaser(setup.store))

    await slot.run()

    assert setup.names("job:success", "job:fenced", "job:complete") == ["job:fenced"]
    stored = setup.database.read(job.id)
    assert stored is not None
    assert stored.locked_by == "other"


async def test_an_idle_continuous_slot_runs_a_job_when_nudged(setup: Setup) -> None:
    slot = setup.slot(setup.source(continuous=True), DirectReleaser(setup.store), continuous=True)
    completed = asyncio.Event()
    setup.events.on("job:complete", lambda _event: completed.set())
    running = asyncio.ensure_future(slot.run())
    await setup.store.called("fetch")

    job = setup.database.add()
    assert slot.nudge() is True
    await completed.wait()
    slot.release()
    await running

    assert setup.log.ran == [job.id]
    assert setup.names("worker:release", "worker:stop") == ["worker:release", "worker:stop"]


async def test_a_fetch_error_ends_a_run_once_slot(setup: Setup) -> None:
    setup.database.add()
    setup.store.fail_next("fetch", RuntimeError("fetch broke"))
    slot = setup.slot(setup.source(continuous=False), DirectReleaser(setup.store))

    with pytest.raises(RuntimeError, match="fetch broke"):
        await slot.run()

    assert setup.names("worker:getJob:error", "worker:stop") == [
        "worker:getJob:error",
        "worker:stop",
    ]
    assert setup.log.ran == []


async def test_an_outcome_that_cannot_be_written_stops_the_slot(setup: Setup) -> None:
    job = setup.database.add()
    setup.store.fail_next("complete", ValueError("cannot write"))
    slot = setup.slot(setup.source(continuous=False), DirectReleaser(setup.store))

    with pytest.raises(ValueError, match="cannot write"):
        await slot.run()

    assert setup.names("worker:fatalError") == ["worker:fatalError"]
    stored = setup.database.read(job.id)
    assert stored is not None
    assert stored.locked_by == "pool"
    assert slot.job is not None
    assert slot.job.id == job.id
