"""The locked job the worker's parts hand to each other."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from ..job import Job


class FetchedJob:
    """A job this pool has locked, as the fetch statement returned it.

    What every job needs on its way from fetch to release is read from the row at once:
    ``id``, ``task_identifier``, ``payload_json`` (the stored JSON text) and ``queue_id``
    (its named queue's id, which decides whether releasing it must also unlock a queue).
    The full :class:`Job` is built from the row the first time :attr:`job` is read (for an
    event, a log line, a plugin hook, a failure, or a task reading ``ctx.job``), so a job
    that succeeds with nobody watching never builds one.
    """

    __slots__ = ("_job", "_row", "id", "payload_json", "queue_id", "task_identifier")

    def __init__(self, row: asyncpg.Record | Mapping[str, Any], task_identifier: str) -> None:
        self._row = row
        self._job: Job | None = None
        self.id: int = row["id"]
        self.queue_id: int | None = row["job_queue_id"]
        self.payload_json: str = row["payload"]
        self.task_identifier = task_identifier

    @property
    def job(self) -> Job:
        """The :class:`Job` as fetched (built on first access, then kept)."""
        job = self._job
        if job is None:
            job = self._job = _job(self._row, self.task_identifier)
        return job


def fetched_job(record: asyncpg.Record | Mapping[str, Any], task_identifier: str) -> FetchedJob:
    """A :class:`FetchedJob` for a row of the fetch statement (an asyncpg record, or a
    SQLAlchemy row mapping)."""
    return FetchedJob(record, task_identifier)


def _job(record: asyncpg.Record | Mapping[str, Any], task_identifier: str) -> Job:
    flags = record["flags"]
    return Job(
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
