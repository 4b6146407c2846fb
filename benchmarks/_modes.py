"""The worker configurations a run measures, for every worker side by side.

* ``unbatched``: each job is fetched, completed and failed with its own statement (the
  default of both graphile workers). pgqueuer has no such mode and is not measured in it.
* ``batched``: Node's perfTest preset: jobs are fetched 500 at a time into a local queue and
  completions / failures are batched on the next tick. pgqueuer runs with ``batch_size=500``.
* ``batched12``: the same with batches of 12, pgqueuer's other measured batch size.
"""

from __future__ import annotations

from typing import Any

MODES = ("unbatched", "batched", "batched12")

#: How our side can add the jobs of the enqueue run: ``WorkerUtils.add_jobs`` returning
#: ``Job`` objects, the same with ``return_jobs=False`` (ids), or ``WorkerUtils.copy_jobs``.
ENQUEUE_METHODS = ("jobs", "ids", "copy")

#: The batch size of each batched mode: our and Node's local queue, pgqueuer's ``batch_size``.
BATCH_SIZES: dict[str, int] = {"batched": 500, "batched12": 12}


def _python_batched(size: int) -> dict[str, Any]:
    return {
        "local_queue_size": size,
        "local_queue_refetch_delay": 0.01,
        "complete_job_batch_delay": 0,
        "fail_job_batch_delay": 0,
    }


def _node_batched(size: int) -> dict[str, Any]:
    return {
        "localQueue": {"size": size, "refetchDelay": {"durationMs": 10}},
        "completeJobBatchDelay": 0,
        "failJobBatchDelay": 0,
    }


#: Keyword arguments given to our ``Worker`` on top of ``tasks`` and ``concurrency``.
PYTHON_OPTIONS: dict[str, dict[str, Any]] = {
    "unbatched": {},
    **{mode: _python_batched(size) for mode, size in BATCH_SIZES.items()},
}

#: ``worker`` preset options given to Node graphile-worker on top of the connection string,
#: ``concurrentJobs: C`` and ``maxPoolSize: C + 1``.
NODE_OPTIONS: dict[str, dict[str, Any]] = {
    "unbatched": {},
    **{mode: _node_batched(size) for mode, size in BATCH_SIZES.items()},
}
