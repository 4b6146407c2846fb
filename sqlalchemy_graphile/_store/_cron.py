"""The cron store: the database operations of the cron scheduler.

The scheduler (:class:`~sqlalchemy_graphile.cron._scheduler.CronScheduler`) gets one and
writes no SQL. :class:`~sqlalchemy_graphile._store._asyncpg_cron.AsyncpgCronStore` runs on
the worker's asyncpg pool; the test suite has an in-memory one, held to the same contract.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..events import CronJob


@dataclass(frozen=True, slots=True)
class KnownCrontab:
    """A row of ``_private_known_crontabs``: since when an item is known, and the last
    minute its job was added for (``None``: never)."""

    identifier: str
    known_since: datetime
    last_execution: datetime | None

    @property
    def not_before(self) -> datetime:
        """The earliest minute a backfill may add a job for."""
        return self.last_execution or self.known_since


class CronStore(Protocol):
    """The cron scheduler's operations on one schema. Each call is atomic; database errors
    propagate as the driver raises them."""

    async def known_crontabs(self, identifiers: Sequence[str]) -> dict[str, KnownCrontab]:
        """The known items among ``identifiers``, by identifier."""

    async def remember(self, identifiers: Sequence[str], known_since: datetime) -> None:
        """Record ``identifiers`` as known since ``known_since`` and never executed;
        identifiers already known are left as they are."""

    async def schedule(self, jobs: Sequence[CronJob], tick: datetime) -> list[int]:
        """Add the job of each of ``jobs`` whose item's last execution is unknown or earlier
        than the minute ``tick``, and move that last execution to ``tick``; in order, as
        one atomic step, so that of schedulers racing for one item and minute exactly one
        adds the job. Items not known yet become known (since ``tick``). Returns the ids of
        the jobs added."""


def cron_specs_json(jobs: Sequence[CronJob]) -> str:
    """``jobs`` as the JSON array the schedule statement reads."""
    return json.dumps([_spec(job) for job in jobs], ensure_ascii=False, allow_nan=False)


def _spec(job: CronJob) -> dict[str, object]:
    spec = job.spec
    return {
        "identifier": job.identifier,
        "task": job.task,
        "payload": job.payload,
        "queue_name": spec.queue_name,
        "max_attempts": spec.max_attempts,
        "job_key": spec.job_key,
        "job_key_mode": spec.job_key_mode.value if spec.job_key_mode is not None else None,
        "priority": spec.priority,
    }
