"""Matching the rows a bulk add returned to the jobs that were sent, without relying on order.

The ``add_jobs`` SQL function returns one row per job it inserted or updated, in an order
nobody promises: ours keeps input order, but Node's and the Rust port's bodies return rows in
whatever order their join produced. This module pairs rows with jobs by content alone, so a
bulk add hands back the job for ``jobs[i]`` at index ``i`` on any adopted schema.

The rules, given the rows with their task identifier and queue name resolved:

* A **keyed** job is paired with the row carrying its key. That row may hold values other
  than the job's (array payloads of a batch job are merged with the stored ones), so nothing
  else is compared. Keys are unique within one call to the database; if a key is given twice
  anyway, the row (which holds the later spec's values) is paired with every job carrying
  that key. A keyed job whose row is missing (its key was taken by a job locked in the middle
  of the call) is paired with ``None``, so the caller can add it again.
* An **unkeyed** job always yields a fresh row holding exactly its values: task, queue,
  payload text, ``max_attempts`` (default 25), ``priority`` (default 0), flags, and
  ``run_at`` when the job gave one (otherwise the database's ``now()``, which is not compared).
  Jobs whose values are identical may be paired with either of their rows: the rows differ
  only in id and are interchangeable.

When the rows come back in input order, as our own function body returns them, each row is
checked against the job at its index (key, or every stored value above) and the pairing is
that order, with no index built; one row out of place sends the whole call down the content
pairing.

Pure: no I/O, no database; :func:`pair_rows` raises :class:`GraphileWorkerError` when the
rows cannot be matched to the jobs (a row left over, or an unkeyed job without its row).
Rows are :class:`~sqlalchemy_graphile.Job` objects or anything else with the attributes
of :class:`StoredRow`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from ._job_input import NewJob
from .errors import GraphileWorkerError

#: What ``add_jobs`` stores when a spec leaves ``max_attempts`` or ``priority`` unset.
DEFAULT_MAX_ATTEMPTS = 25
DEFAULT_PRIORITY = 0


class StoredRow(Protocol):
    """What pairing reads of a returned row (a :class:`~sqlalchemy_graphile.Job` has it all)."""

    @property
    def task_identifier(self) -> str: ...
    @property
    def queue_name(self) -> str | None: ...
    @property
    def payload_json(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def run_at(self) -> datetime: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def key(self) -> str | None: ...
    @property
    def flags(self) -> Mapping[str, bool] | None: ...


R = TypeVar("R", bound=StoredRow)

# The values an unkeyed row shares with the job that made it; run_at is kept apart because a
# job without one gets the database's clock.
_Content = tuple[str, str | None, str, int, int, frozenset[str] | None]


def _job_content(job: NewJob) -> _Content:
    spec = job.spec
    flags = frozenset(spec.flags) if spec.flags else None
    return (
        job.identifier,
        spec.queue_name,
        job.payload_json,
        DEFAULT_MAX_ATTEMPTS if spec.max_attempts is None else spec.max_attempts,
        DEFAULT_PRIORITY if spec.priority is None else spec.priority,
        flags,
    )


def _row_content(row: StoredRow) -> _Content:
    flags = frozenset(row.flags) if row.flags else None
    return (
        row.task_identifier,
        row.queue_name,
        row.payload_json,
        row.max_attempts,
        row.priority,
        flags,
    )


def pair_rows(jobs: Sequence[NewJob], rows: Sequence[R]) -> list[R | None]:
    """The row for each of ``jobs``, at the job's index (``None``: a keyed job got no row).

    ``rows`` are what one ``add_jobs`` call returned for ``jobs``, in any order. Raises
    :class:`GraphileWorkerError` when they do not belong to ``jobs``.
    """
    if in_input_order(jobs, rows):
        return list(rows)
    return _pair_by_content(jobs, rows)


def in_input_order(jobs: Sequence[NewJob], rows: Sequence[StoredRow]) -> bool:
    """Whether ``rows[i]`` is the row of ``jobs[i]`` for every ``i``: one row per job, a
    keyed job's row carries its key, an unkeyed job's row holds its values (``run_at`` too
    when the job gave one). Stops at the first row that does not fit."""
    if len(rows) != len(jobs):
        return False
    for job, row in zip(jobs, rows, strict=True):
        spec = job.spec
        if spec.job_key is not None:
            if row.key != spec.job_key:
                return False
            continue
        if (
            row.key is not None
            or row.payload_json != job.payload_json
            or row.task_identifier != job.identifier
            or row.queue_name != spec.queue_name
            or row.priority != (DEFAULT_PRIORITY if spec.priority is None else spec.priority)
            or row.max_attempts
            != (DEFAULT_MAX_ATTEMPTS if spec.max_attempts is None else spec.max_attempts)
            or (spec.run_at is not None and row.run_at != spec.run_at)
        ):
            return False
        flags = row.flags
        if spec.flags:
            if flags is None or flags.keys() != set(spec.flags):
                return False
        elif flags:
            return False
    return True


def _pair_by_content(jobs: Sequence[NewJob], rows: Sequence[R]) -> list[R | None]:
    by_key: dict[str, R] = {}
    # Unkeyed rows by their content with run_at, and by their content alone.
    exact: defaultdict[Hashable, list[int]] = defaultdict(list)
    loose: defaultdict[Hashable, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        if row.key is not None:
            if row.key in by_key:
                raise _mismatch(f"two rows carry the key {row.key!r}")
            by_key[row.key] = row
        else:
            content = _row_content(row)
            exact[(content, row.run_at)].append(index)
            loose[content].append(index)

    paired: list[R | None] = [None] * len(jobs)
    used_keys: set[str] = set()
    taken: set[int] = set()
    # Jobs that name their run_at first: a job without one can take any run_at, so it must
    # only choose among the rows the others left.
    timed = [
        i for i, job in enumerate(jobs) if job.spec.job_key is None and job.spec.run_at is not None
    ]
    untimed = [
        i for i, job in enumerate(jobs) if job.spec.job_key is None and job.spec.run_at is None
    ]
    for i, job in enumerate(jobs):
        key = job.spec.job_key
        if key is not None and key in by_key:
            paired[i] = by_key[key]
            used_keys.add(key)
    for i in timed:
        run_at: datetime | None = jobs[i].spec.run_at
        paired[i] = rows[_take(exact[(_job_content(jobs[i]), run_at)], taken, jobs[i])]
    for i in untimed:
        paired[i] = rows[_take(loose[_job_content(jobs[i])], taken, jobs[i])]

    unused = len(rows) - len(taken) - len(used_keys)
    if unused:
        raise _mismatch(f"{unused} returned row(s) belong to none of the jobs")
    return paired


def _take(candidates: list[int], taken: set[int], job: NewJob) -> int:
    while candidates:
        index = candidates.pop()
        if index not in taken:
            taken.add(index)
            return index
    raise _mismatch(f"no row was returned for the unkeyed {job.identifier!r} job")


def _mismatch(detail: str) -> GraphileWorkerError:
    return GraphileWorkerError(f"add_jobs returned rows that do not match the jobs sent: {detail}")
