"""The dashboard section of the query catalog: every shape of the jobs list is a valid
statement with the parameters it says, and a job is read into a subclass of ``Job``."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from sqlalchemy_graphile import Job
from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._catalog._columns import job_from_row
from sqlalchemy_graphile._catalog._dashboard import PageOrder
from sqlalchemy_graphile._catalog._job_filters import JobFilterShape, SearchOperator

ORDERS: tuple[PageOrder, ...] = ("run", "newest", "newest_in_window", "newest_searched")
SEARCHES: tuple[SearchOperator | None, ...] = (None, "like", "ilike")


def _shapes() -> list[JobFilterShape]:
    return [
        JobFilterShape(state, task=task, queue=queue, search=search)
        for state, task, queue, search in itertools.product(
            ("all", "ready", "scheduled", "locked", "failed"),
            (False, True),
            (False, True),
            SEARCHES,
        )
    ]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("after_cursor", [False, True])
def test_every_page_shape_declares_exactly_its_parameters(
    order: PageOrder, after_cursor: bool
) -> None:
    statements = catalog_for("graphile_worker").dashboard
    for shape in _shapes():
        statement = statements.job_page(shape, order, after_cursor=after_cursor)
        expected = {*shape.parameters(), "limit"}
        if after_cursor:
            expected |= (
                {"after_id", "after_priority", "after_run_at"} if order == "run" else {"after_id"}
            )
        if order == "newest_in_window":
            expected.add("window")
        assert set(statement.names) == expected
        assert statement is statements.job_page(shape, order, after_cursor=after_cursor)


def test_filter_statements_take_the_filter_values_as_parameters() -> None:
    statements = catalog_for("graphile_worker").dashboard
    shape = JobFilterShape("failed", task=True, queue=True, search="ilike")
    assert set(statements.count_matching(shape).names) == {"task", "queue", "pattern", "search_id"}
    assert set(statements.matching_ids(shape).names) == {
        "task",
        "queue",
        "pattern",
        "search_id",
        "after_id",
        "max_id",
        "limit",
    }
    assert " ilike " in statements.count_matching(shape).sql


def test_a_filter_shape_refuses_unknown_states_and_operators() -> None:
    with pytest.raises(ValueError, match="unknown job state"):
        JobFilterShape("done")
    with pytest.raises(ValueError, match="unknown search operator"):
        JobFilterShape(search="similar to")  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Noted(Job):
    note: str


def test_job_from_row_builds_a_subclass_with_its_own_fields() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = (7, None, 3, '{"a":1}', 0, now, 1, 25, None, now, now, "k", None, None, 2, '{"f":true}')
    job = job_from_row(row, "mail", None, job_type=_Noted, note="extra")
    assert isinstance(job, _Noted)
    assert (job.id, job.task_identifier, job.payload, job.flags, job.note) == (
        7,
        "mail",
        {"a": 1},
        {"f": True},
        "extra",
    )
    assert job_from_row(row, "mail", None) == Job(
        **{name: getattr(job, name) for name in Job.__dataclass_fields__}
    )
