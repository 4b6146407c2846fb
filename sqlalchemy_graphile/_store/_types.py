"""The values a job store hands to the worker's parts and takes back from them."""

from __future__ import annotations

from dataclasses import dataclass

from .._catalog._columns import ID, PAYLOAD, QUEUE_ID, Row, job_from_row
from ..job import Job


class FetchedJob:
    """A job this pool has locked.

    What every job needs on its way from fetch to release is at hand at once: ``id``,
    ``task_identifier``, ``payload_json`` (the stored JSON text) and ``queue_id`` (its named
    queue's id, which decides whether releasing it must also unlock a queue). Made from a
    row (:func:`fetched_job`, as the fetch does), the full :class:`Job` is built the first
    time :attr:`job` is read (for an event, a log line, a plugin hook, a failure, or a task
    reading ``ctx.job``), so a job that succeeds with nobody watching never builds one.
    """

    __slots__ = ("_job", "_queue_name", "_row", "id", "payload_json", "queue_id", "task_identifier")

    def __init__(self, job: Job, queue_id: int | None) -> None:
        self._job: Job | None = job
        self._row: Row | None = None
        self._queue_name = job.queue_name
        self.id = job.id
        self.queue_id = queue_id
        self.payload_json = job.payload_json
        self.task_identifier = job.task_identifier

    @classmethod
    def from_row(cls, row: Row, task_identifier: str, queue_name: str | None) -> FetchedJob:
        """The job of a row that starts with the catalog's job columns; its :class:`Job`
        is built on first access."""
        fetched = cls.__new__(cls)
        fetched._job = None
        fetched._row = row
        fetched._queue_name = queue_name
        fetched.id = row[ID]
        fetched.queue_id = row[QUEUE_ID]
        fetched.payload_json = row[PAYLOAD]
        fetched.task_identifier = task_identifier
        return fetched

    @property
    def job(self) -> Job:
        """The :class:`Job` as fetched (built on first access, then kept)."""
        job = self._job
        if job is None:
            row = self._row
            assert row is not None  # made by from_row
            job = self._job = job_from_row(row, self.task_identifier, self._queue_name)
            self._row = None
        return job


def fetched_job(row: Row, task_identifier: str, queue_name: str | None) -> FetchedJob:
    """A :class:`FetchedJob` from a row that starts with the catalog's job columns."""
    return FetchedJob.from_row(row, task_identifier, queue_name)


@dataclass(frozen=True, slots=True)
class TaskIds:
    """The ids of a worker's task identifiers."""

    ids: str
    """The ids as the fetch statement takes them (comma-separated, ascending)."""
    identifier_by_id: dict[int, str]


@dataclass(frozen=True, slots=True)
class Failure:
    """The failure of a fetched job: its message, the payload that replaces the stored one
    (JSON text, or ``None`` to keep it), and whether it uses up the job's attempts."""

    job: FetchedJob
    message: str
    replacement_payload: str | None = None
    permanent: bool = False

    @property
    def id(self) -> int:
        return self.job.id
