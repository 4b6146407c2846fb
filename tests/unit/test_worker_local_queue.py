"""The local queue on the in-memory job store: modes, batches and refills, give-backs on
release and after the TTL, pulses, run-once, named queues, forbidden flags, fetch errors
and the refetch delay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from sqlalchemy_graphile.events import LocalQueueEvent, LocalQueueMode, WorkerEvents
from sqlalchemy_graphile.job import Job
from sqlalchemy_graphile.worker._local_queue import LocalQueue
from sqlalchemy_graphile.worker._options import RefetchDelay
from sqlalchemy_graphile.worker._task_ids import TaskIdentifiers
from tests._fakes.jobs import FakeDatabase, FakeJobStore

POLLING = LocalQueueMode.POLLING
WAITING = LocalQueueMode.WAITING
TTL_EXPIRED = LocalQueueMode.TTL_EXPIRED
RELEASED = LocalQueueMode.RELEASED


@dataclass
class Setup:
    """A local queue on a fake store, and what it reported."""

    database: FakeDatabase
    store: FakeJobStore
    events: WorkerEvents
    queue: LocalQueue | None = None
    modes: list[LocalQueueMode] = field(default_factory=list)
    returned: list[tuple[Job, ...]] = field(default_factory=list)
    major_errors: list[Exception] = field(default_factory=list)
    _returned_event: asyncio.Event = field(default_factory=asyncio.Event)

    def make(
        self,
        *,
        size: int = 3,
        ttl: float = 3600.0,
        poll_interval: float = 3600.0,
        continuous: bool = True,
        refetch_delay: RefetchDelay | None = None,
    ) -> LocalQueue:
        self.queue = LocalQueue(
            self.store,
            TaskIdentifiers(self.store, ["task"]),
            size=size,
            ttl=ttl,
            poll_interval=poll_interval,
            refetch_delay=refetch_delay,
            continuous=continuous,
            use_local_time=False,
            events=self.events,
            on_major_error=self.major_errors.append,
        )
        return self.queue

    def record(self, event: LocalQueueEvent) -> None:
        if event.name == "localQueue:setMode" and event.new_mode is not None:
            self.modes.append(event.new_mode)
        elif event.name == "localQueue:returnJobs" and event.jobs is not None:
            self.returned.append(event.jobs)
            self._returned_event.set()

    async def jobs_returned(self) -> None:
        await self._returned_event.wait()


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    database = FakeDatabase()
    events = WorkerEvents()
    made = Setup(database, database.store("pool"), events)
    events.on("localQueue:setMode", made.record)
    events.on("localQueue:returnJobs", made.record)
    yield made
    if made.queue is not None:
        await made.queue.release()
    assert made.major_errors == []


def attempts(database: FakeDatabase, job_ids: list[int]) -> list[tuple[int, str | None]]:
    """``(attempts, locked_by)`` of each job, as stored."""
    found = [database.read(job_id) for job_id in job_ids]
    return [(job.attempts, job.locked_by) for job in found if job is not None]


async def test_batches_are_handed_out_best_first_and_refilled_before_they_run_out(
    setup: Setup,
) -> None:
    jobs = [setup.database.add(priority=priority) for priority in (4, 0, 3, 1, 2)]
    queue = setup.make(size=3)

    handed = [await queue.get_job(None) for _ in jobs]

    ordered = sorted(jobs, key=lambda job: job.priority)
    assert [job.id for job in handed if job is not None] == [job.id for job in ordered]
    assert attempts(setup.database, [job.id for job in jobs]) == [(1, "pool")] * 5
    # The first batch was full: the next one was fetched when half of it was handed out.
    assert [argument for name, argument in setup.store.calls if name == "fetch"][:2] == [3, 3]
    assert setup.modes[:2] == [POLLING, WAITING]


async def test_release_gives_the_cached_jobs_back_with_their_attempt(setup: Setup) -> None:
    jobs = [setup.database.add() for _ in range(4)]
    queue = setup.make(size=5)
    running = await queue.get_job(None)
    assert running is not None
    assert queue.cached == 3

    await queue.release()

    assert queue.mode == RELEASED
    assert await queue.get_job(None) is None
    cached = [job.id for job in jobs if job.id != running.id]
    assert [sorted(job.id for job in batch) for batch in setup.returned] == [cached]
    assert attempts(setup.database, cached) == [(0, None)] * 3
    assert attempts(setup.database, [running.id]) == [(1, "pool")]


async def test_jobs_cached_past_the_ttl_are_given_back_and_fetched_again(setup: Setup) -> None:
    jobs = [setup.database.add() for _ in range(3)]
    queue = setup.make(size=5, ttl=0.01)
    running = await queue.get_job(None)
    assert running is not None

    await setup.jobs_returned()
    await setup.store.called("give_back")

    assert queue.mode == TTL_EXPIRED
    assert queue.cached == 0
    waiting = [job.id for job in jobs if job.id != running.id]
    assert attempts(setup.database, waiting) == [(0, None)] * 2
    again = await queue.get_job(None)
    assert again is not None
    assert again.id in waiting
    assert again.job.attempts == 1
    assert setup.modes[-2:] == [POLLING, WAITING]


async def test_a_pulse_fetches_at_once_for_a_waiting_slot(setup: Setup) -> None:
    queue = setup.make(size=3)
    slot = asyncio.ensure_future(queue.get_job(None))
    await setup.store.called("fetch")
    assert not slot.done()

    job = setup.database.add()
    queue.pulse(1)

    fetched = await slot
    assert fetched is not None
    assert fetched.id == job.id
    assert setup.store.count("fetch") == 2


async def test_run_once_releases_the_queue_when_nothing_is_left(setup: Setup) -> None:
    jobs = [setup.database.add() for _ in range(2)]
    queue = setup.make(size=5, continuous=False)

    handed = [await queue.get_job(None) for _ in range(3)]

    assert [job.id for job in handed if job is not None] == [job.id for job in jobs]
    assert handed[2] is None
    assert queue.mode == RELEASED


async def test_run_once_waits_for_the_next_job_of_a_running_named_queue(setup: Setup) -> None:
    first = setup.database.add(queue_name="q")
    second = setup.database.add(queue_name="q")
    queue = setup.make(size=5, continuous=False)
    running = await queue.get_job(None)
    assert running is not None
    assert running.id == first.id

    slot = asyncio.ensure_future(queue.get_job(None))
    await setup.store.complete([running])
    queue.queues_released(1)

    successor = await slot
    assert successor is not None
    assert successor.id == second.id


async def test_a_batch_holds_one_job_per_named_queue(setup: Setup) -> None:
    queued = [setup.database.add(queue_name="q") for _ in range(3)]
    free = setup.database.add()
    queue = setup.make(size=10)

    first = await queue.get_job(None)
    second = await queue.get_job(None)

    assert first is not None
    assert second is not None
    assert {first.id, second.id} == {queued[0].id, free.id}
    assert queue.cached == 0
    assert attempts(setup.database, [queued[1].id, queued[2].id]) == [(0, None)] * 2


async def test_forbidden_flags_fetch_one_job_directly(setup: Setup) -> None:
    setup.database.add(flags=("x",))
    plain = setup.database.add()
    queue = setup.make(size=3)

    fetched = await queue.get_job(["x"])

    assert fetched is not None
    assert fetched.id == plain.id
    assert [argument for name, argument in setup.store.calls if name == "fetch"] == [1]
    assert queue.mode == LocalQueueMode.STARTING
    assert queue.cached == 0


async def test_a_fetch_error_in_run_once_reaches_the_waiting_slot(setup: Setup) -> None:
    setup.database.add()
    setup.store.fail_next("fetch", RuntimeError("fetch broke"))
    queue = setup.make(continuous=False)

    with pytest.raises(RuntimeError, match="fetch broke"):
        await queue.get_job(None)

    assert queue.mode == RELEASED


async def test_a_continuous_queue_fetches_again_after_an_error(setup: Setup) -> None:
    job = setup.database.add()
    setup.store.fail_next("fetch", RuntimeError("fetch broke"))
    queue = setup.make(poll_interval=0.01)

    fetched = await queue.get_job(None)

    assert fetched is not None
    assert fetched.id == job.id
    assert setup.store.count("fetch") == 2


async def test_announcements_cut_a_refetch_delay_short(setup: Setup) -> None:
    delays: list[str] = []
    setup.events.on("localQueue:refetchDelay:start", lambda event: delays.append(event.name))
    setup.events.on("localQueue:refetchDelay:abort", lambda event: delays.append(event.name))
    # An abort threshold below 1: one announcement ends the delay.
    queue = setup.make(refetch_delay=RefetchDelay(duration=3600.0, max_abort_threshold=1))
    slot = asyncio.ensure_future(queue.get_job(None))
    await setup.store.called("fetch")
    assert delays == ["localQueue:refetchDelay:start"]

    job = setup.database.add()
    queue.pulse(1)

    fetched = await slot
    assert fetched is not None
    assert fetched.id == job.id
    assert delays == ["localQueue:refetchDelay:start", "localQueue:refetchDelay:abort"]
