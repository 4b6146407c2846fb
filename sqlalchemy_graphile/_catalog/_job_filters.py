"""Filters on a row set of jobs aliased ``jobs``, shared by the statements that list jobs
(the dashboard's list and bulk actions, the command line's ``list``).

A :class:`JobFilterShape` says which filters are present; :func:`filter_where` writes their
``where`` clause once per shape. The values filtered by are always bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._job_states import JOB_STATES, STATE_CONDITIONS

#: A case-sensitive (``like``) or case-insensitive (``ilike``) search.
SearchOperator = Literal["like", "ilike"]


_FILTER_STATES = ("all", *JOB_STATES)


@dataclass(frozen=True, slots=True)
class JobFilterShape:
    """Which filters a jobs statement applies: a state (``all`` is none), a task identifier
    (parameter ``task``), a queue name (``queue``) and a search (``pattern``, a LIKE pattern,
    and ``search_id``, the job id the term spells or null) matched with ``search``.

    Raises :class:`ValueError` for an unknown state (requests are checked before).
    """

    state: str = "all"
    task: bool = False
    queue: bool = False
    search: SearchOperator | None = None

    def __post_init__(self) -> None:
        if self.state not in _FILTER_STATES:
            raise ValueError(f"unknown job state {self.state!r}")
        if self.search not in (None, "like", "ilike"):
            raise ValueError(f"unknown search operator {self.search!r}")

    def parameters(self) -> dict[str, str]:
        """The parameters of the filters present, with their SQL types."""
        types: dict[str, str] = {}
        if self.task:
            types["task"] = "text"
        if self.queue:
            types["queue"] = "text"
        if self.search is not None:
            types["pattern"] = "text"
            types["search_id"] = "bigint"
        return types


def filter_where(s: str, shape: JobFilterShape, extra: tuple[str, ...] = ()) -> str:
    """The ``where`` clause of ``shape`` (empty without filters), plus ``extra`` conditions,
    on the schema ``s`` (quoted). Task and queue names are matched in their small tables
    once, not joined in for every job."""
    conditions = [] if shape.state == "all" else [STATE_CONDITIONS[shape.state]]
    if shape.task:
        conditions.append(
            f"jobs.task_id = (select tasks.id from {s}._private_tasks as tasks"
            " where tasks.identifier = cast(:task as text))"
        )
    if shape.queue:
        conditions.append(
            f"jobs.job_queue_id = (select queues.id from {s}._private_job_queues as queues"
            " where queues.queue_name = cast(:queue as text))"
        )
    if shape.search is not None:
        match = f"{shape.search} cast(:pattern as text) escape '\\'"
        conditions.append(
            "(jobs.id = cast(:search_id as bigint)"
            " or jobs.task_id = any(array(select search_tasks.id"
            f" from {s}._private_tasks as search_tasks where search_tasks.identifier {match}))"
            " or jobs.job_queue_id = any(array(select search_queues.id"
            f" from {s}._private_job_queues as search_queues"
            f" where search_queues.queue_name {match}))"
            f" or jobs.key {match} or jobs.locked_by {match} or jobs.last_error {match}"
            f" or cast(jobs.payload as text) {match})"
        )
    conditions.extend(extra)
    return (" where " + " and ".join(conditions)) if conditions else ""
