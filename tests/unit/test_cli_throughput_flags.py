"""The ``run`` flags for the local queue, batched release and uvloop."""

from __future__ import annotations

import pytest

from sqlalchemy_graphile.cli._main import _loop_factory
from sqlalchemy_graphile.cli._parser import parse_args


def test_defaults_leave_batching_off() -> None:
    args = parse_args(["run", "--tasks", "app.tasks"])
    assert args.local_queue_size is None
    assert args.local_queue_ttl == 300.0
    assert args.local_queue_refetch_delay is None
    assert args.complete_job_batch_delay is None
    assert args.fail_job_batch_delay is None
    assert args.uvloop is False


def test_flags_are_parsed() -> None:
    args = parse_args(
        [
            "run",
            "--tasks",
            "app.tasks",
            "--local-queue-size",
            "500",
            "--local-queue-ttl",
            "60",
            "--local-queue-refetch-delay",
            "0.01",
            "--complete-job-batch-delay",
            "0",
            "--fail-job-batch-delay",
            "-1",
            "--uvloop",
        ]
    )
    assert args.local_queue_size == 500
    assert args.local_queue_ttl == 60.0
    assert args.local_queue_refetch_delay == 0.01
    assert args.complete_job_batch_delay == 0.0
    assert args.fail_job_batch_delay == -1.0
    assert args.uvloop is True


def test_uvloop_gives_its_loop_factory() -> None:
    uvloop = pytest.importorskip("uvloop")
    assert _loop_factory(True) is uvloop.new_event_loop
    assert _loop_factory(False) is None
