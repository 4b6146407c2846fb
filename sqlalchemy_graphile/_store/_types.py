"""The values a job store hands to the worker's parts and takes back from them."""

from __future__ import annotations

from dataclasses import dataclass

from .._catalog._columns import Row, job_from_row
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


def fetched_job(row: Row, task_identifier: str, queue_name: str | None) -> FetchedJob:
    """A :class:`FetchedJob` from a row that starts with the catalog's job columns."""
    return FetchedJob(job_from_row(row, task_identifier, queue_name), row[1])


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
