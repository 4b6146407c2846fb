"""The job states as SQL on a row set aliased ``jobs``, for the statements that show or count
jobs by state.

The states follow the Rust port's definitions: *ready* is unlocked, has attempts left and is
due; *scheduled* is unlocked, has attempts left and is due later; *locked* is held by a
worker; *failed* is unlocked with no attempts left. Every job is in exactly one of them. The
conditions use the generated ``is_available`` column, so that lists of ready and scheduled
jobs are read in the order of the jobs' main index.
"""

from __future__ import annotations

from collections.abc import Mapping

#: The states, in the order they are counted and shown.
JOB_STATES = ("ready", "scheduled", "locked", "failed")

#: The condition of each state.
STATE_CONDITIONS: Mapping[str, str] = {
    "ready": "jobs.is_available and jobs.run_at <= now()",
    "scheduled": "jobs.is_available and jobs.run_at > now()",
    "locked": "jobs.locked_at is not null",
    "failed": "jobs.locked_at is null and jobs.attempts >= jobs.max_attempts",
}

#: The state of a row, as text.
JOB_STATE = (
    "case when jobs.locked_at is not null then 'locked'"
    " when jobs.attempts >= jobs.max_attempts then 'failed'"
    " when jobs.run_at <= now() then 'ready'"
    " else 'scheduled' end"
)

#: How many jobs of a group are in each state: the columns ``ready``, ``scheduled``,
#: ``locked`` and ``failed``.
STATE_COUNTS = ", ".join(
    f"count(*) filter (where {STATE_CONDITIONS[state]}) as {state}" for state in JOB_STATES
)
