"""Checks of the local queue and batched release options, before anything connects."""

from __future__ import annotations

from typing import Any

import pytest

from sqlalchemy_graphile import ConfigurationError, RefetchDelay, Task, Worker, WorkerContext


class Noop(Task):
    IDENTIFIER = "noop"

    async def run(self, ctx: WorkerContext) -> None:
        return None


def worker(**options: Any) -> Worker:
    return Worker("postgresql://localhost/x", tasks=[Noop], **options)


def test_defaults_are_off() -> None:
    options = worker().options
    assert options.local_queue_size is None
    assert options.local_queue_ttl == 300.0
    assert options.local_queue_refetch_delay is None
    assert options.complete_job_batch_delay is None
    assert options.fail_job_batch_delay is None


def test_minus_one_means_off_as_in_graphile_worker() -> None:
    options = worker(
        local_queue_size=-1, complete_job_batch_delay=-1, fail_job_batch_delay=-1
    ).options
    assert options.local_queue_size is None
    assert options.complete_job_batch_delay is None
    assert options.fail_job_batch_delay is None


def test_values_are_kept() -> None:
    options = worker(
        local_queue_size=500,
        local_queue_ttl=5,
        complete_job_batch_delay=0,
        fail_job_batch_delay=0.25,
    ).options
    assert options.local_queue_size == 500
    assert options.local_queue_ttl == 5.0
    assert options.complete_job_batch_delay == 0.0
    assert options.fail_job_batch_delay == 0.25


def test_a_refetch_delay_in_seconds_gets_graphile_worker_defaults() -> None:
    delay = worker(local_queue_size=10, local_queue_refetch_delay=0.01).options
    assert delay.local_queue_refetch_delay == RefetchDelay(
        duration=0.01, threshold=0, max_abort_threshold=50
    )
    full = RefetchDelay(duration=1.0, threshold=3, max_abort_threshold=7)
    kept = worker(local_queue_size=10, local_queue_refetch_delay=full).options
    assert kept.local_queue_refetch_delay == full


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"local_queue_size": 0}, "local_queue_size"),
        ({"local_queue_size": -2}, "local_queue_size"),
        ({"local_queue_size": True}, "local_queue_size"),
        ({"local_queue_size": 2.5}, "local_queue_size"),
        ({"local_queue_size": 5, "local_queue_ttl": 0}, "local_queue_ttl"),
        ({"local_queue_refetch_delay": 0.1}, "needs a local queue"),
        ({"local_queue_size": 5, "local_queue_refetch_delay": 3.0}, "must not exceed"),
        ({"local_queue_size": 5, "local_queue_refetch_delay": "1"}, "RefetchDelay"),
        (
            {"local_queue_size": 5, "local_queue_refetch_delay": RefetchDelay(0.1, threshold=-1)},
            "threshold",
        ),
        (
            {
                "local_queue_size": 5,
                "local_queue_refetch_delay": RefetchDelay(0.1, max_abort_threshold=0),
            },
            "max_abort_threshold",
        ),
        ({"complete_job_batch_delay": -0.5}, "complete_job_batch_delay"),
        ({"fail_job_batch_delay": float("nan")}, "fail_job_batch_delay"),
        ({"fail_job_batch_delay": "0"}, "fail_job_batch_delay"),
    ],
)
def test_bad_values_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        worker(**options)
