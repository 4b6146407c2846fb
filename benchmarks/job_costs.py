"""``python -m benchmarks.job_costs``: the worker's CPU per job between a fetched row and its
release, measured directly, without a database (the end-to-end figures, which add the
statements and PostgreSQL's share of the machine, come from ``python -m benchmarks``).

The worker's own slots, task runner and batched releaser, set up as in the benchmark's
``batched`` mode (24 slots, completions written on the next turn of the event loop, nobody
listening to events, logs at WARNING), run ``--jobs`` jobs of the benchmark's task
``log_if_999``. The job source hands out rows shaped like the fetch statement's, building
each job from its row as the job store does; the releaser's writes go to a stand-in for the
job store that records every job as completed at once. Prints the CPU time
per job in microseconds, the best of ``--runs`` runs, on uvloop when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy_graphile import WorkerEvents
from sqlalchemy_graphile._store import FetchedJob, JobStore, fetched_job
from sqlalchemy_graphile.context import JobAdder
from sqlalchemy_graphile.worker._release import BatchedReleaser
from sqlalchemy_graphile.worker._runner import TaskRunner
from sqlalchemy_graphile.worker._slot import FetchHealth, Slot

from .tasks import LogIf999

CONCURRENCY = 24
BATCH = 500
POOL_ID = "sgpool-bench"
_NOW = datetime.now(UTC)


def _row(job_id: int) -> tuple[Any, ...]:
    """A row as the fetch statement returns it (the catalog's job columns), for job
    ``job_id``."""
    payload = f'{{"id": {job_id}}}'
    return (
        job_id,
        None,
        1,
        payload,
        0,
        _NOW,
        1,
        25,
        None,
        _NOW,
        _NOW,
        None,
        _NOW,
        POOL_ID,
        0,
        None,
    )


class _Rows:
    """A job source handing out ``count`` jobs, built from rows ``BATCH`` at a time."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._next_id = 1
        self._jobs: deque[FetchedJob] = deque()

    async def get_job(self, forbidden_flags: Sequence[str] | None) -> FetchedJob | None:
        if not self._jobs:
            take = min(BATCH, self._left)
            if take == 0:
                return None
            rows = [_row(self._next_id + i) for i in range(take)]
            self._next_id += take
            self._left -= take
            self._jobs.extend(fetched_job(row, "log_if_999", None) for row in rows)
        return self._jobs.popleft()

    def queues_released(self, count: int) -> None:
        pass

    def pulse(self, count: int) -> int:
        return count

    async def release(self) -> None:
        pass


class _RecordingStore:
    """Stands in for the job store: every completion is recorded at once."""

    pool_id = POOL_ID

    def __init__(self) -> None:
        self.completed: list[int] = []

    async def complete(self, jobs: Sequence[FetchedJob]) -> set[int]:
        ids = [job.id for job in jobs]
        self.completed.extend(ids)
        return set(ids)  # every job recorded, none fenced


async def run_jobs(count: int) -> tuple[float, list[int]]:
    """Run ``count`` jobs; return the CPU seconds it took and the ids completed, in the
    order their completions were written."""
    store = _RecordingStore()
    releaser = BatchedReleaser(
        cast(JobStore, store),
        complete_delay=0,
        fail_delay=0,
        on_fatal=_fatal,
    )
    with ThreadPoolExecutor(1) as executor:
        runner = TaskRunner(
            {"log_if_999": LogIf999},
            extensions={},
            pool_id=POOL_ID,
            abort_signal=asyncio.Event(),
            adder=cast(JobAdder, None),  # the task adds no jobs
            executor=executor,
        )
        source = _Rows(count)
        slots = [
            Slot(
                pool_id=POOL_ID,
                continuous=False,
                poll_interval=1.0,
                source=source,
                releaser=releaser,
                runner=runner,
                events=WorkerEvents(),
                forbidden_flags=None,
                health=FetchHealth(),
            )
            for _ in range(CONCURRENCY)
        ]
        started = time.process_time()
        await asyncio.gather(*(slot.run() for slot in slots))
        await releaser.release()
        seconds = time.process_time() - started
    return seconds, store.completed


def _fatal(action: str, error: Exception) -> None:
    raise RuntimeError(f"{action} failed: {error}")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.job_costs", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per run")
    parser.add_argument("--runs", type=int, default=5, help="runs; the best is reported")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    factory = _loop_factory()
    per_job = []
    with asyncio.Runner(loop_factory=factory) as runner:
        for _ in range(args.runs):
            seconds, completed = runner.run(run_jobs(args.jobs))
            if sorted(completed) != list(range(1, args.jobs + 1)):
                raise RuntimeError("not every job was completed exactly once")
            per_job.append(seconds / args.jobs * 1e6)
    loop = "uvloop" if factory is not None else "asyncio"
    runs = ", ".join(f"{us:.2f}" for us in per_job)
    print(
        f"{args.jobs} jobs per run on {loop}: best {min(per_job):.2f} us of CPU per job "
        f"(runs: {runs})"
    )


if __name__ == "__main__":
    main()
