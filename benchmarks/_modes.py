"""The two worker configurations every run measures, for both workers side by side.

* ``unbatched``: each job is fetched, completed and failed with its own statement (the
  default of both workers).
* ``batched``: Node's perfTest preset: jobs are fetched 500 at a time into a local queue and
  completions / failures are batched on the next tick.
"""

from __future__ import annotations

from typing import Any

MODES = ("unbatched", "batched")

#: Keyword arguments given to our ``Worker`` on top of ``tasks`` and ``concurrency``.
PYTHON_OPTIONS: dict[str, dict[str, Any]] = {
    "unbatched": {},
    "batched": {
        "local_queue_size": 500,
        "local_queue_refetch_delay": 0.01,
        "complete_job_batch_delay": 0,
        "fail_job_batch_delay": 0,
    },
}

#: ``worker`` preset options given to Node graphile-worker on top of the connection string,
#: ``concurrentJobs: C`` and ``maxPoolSize: C + 1``.
NODE_OPTIONS: dict[str, dict[str, Any]] = {
    "unbatched": {},
    "batched": {
        "localQueue": {"size": 500, "refetchDelay": {"durationMs": 10}},
        "completeJobBatchDelay": 0,
        "failJobBatchDelay": 0,
    },
}
