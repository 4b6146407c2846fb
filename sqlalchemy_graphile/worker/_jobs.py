"""The locked job the worker's parts hand to each other."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from ..job import Job


@dataclass(frozen=True, slots=True)
class FetchedJob:
    """A job this pool has locked: the :class:`Job` row plus its named queue's id, which
    decides whether releasing it must also unlock a queue."""

    job: Job
    queue_id: int | None

    @property
    def id(self) -> int:
        return self.job.id


def fetched_job(record: asyncpg.Record | Mapping[str, Any], task_identifier: str) -> FetchedJob:
    """Build a :class:`FetchedJob` from a row of the fetch statement (an asyncpg record, or
    a SQLAlchemy row mapping)."""
    flags = record["flags"]
    job = Job(
        id=record["id"],
        task_identifier=task_identifier,
        queue_name=record["queue_name"],
        payload_json=record["payload"],
        priority=record["priority"],
        run_at=record["run_at"],
        attempts=record["attempts"],
        max_attempts=record["max_attempts"],
        last_error=record["last_error"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        key=record["key"],
        locked_at=record["locked_at"],
        locked_by=record["locked_by"],
        revision=record["revision"],
        flags=json.loads(flags) if flags is not None else None,
    )
    return FetchedJob(job, record["job_queue_id"])
