"""Pairing the rows a bulk add returned with the jobs sent, whatever order the rows come in."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sqlalchemy_graphile import GraphileWorkerError, JobSpec
from sqlalchemy_graphile._job_input import NewJob, from_raw
from sqlalchemy_graphile._job_pairing import in_input_order, pair_rows
from sqlalchemy_graphile.job import Job

NOW = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count(1)


def new_job(identifier: str, payload: Any = None, **spec: Any) -> NewJob:
    return from_raw(identifier, payload, JobSpec(**spec))


def row_for(job: NewJob, *, payload: Any = None, run_at: datetime | None = None) -> Job:
    """The row ``add_jobs`` stores for ``job`` (``payload`` overrides it, as a merge does)."""
    spec = job.spec
    return Job(
        id=next(_ids),
        task_identifier=job.identifier,
        queue_name=spec.queue_name,
        payload_json=job.payload_json if payload is None else json.dumps(payload),
        priority=0 if spec.priority is None else spec.priority,
        run_at=run_at or spec.run_at or NOW,
        attempts=0,
        max_attempts=25 if spec.max_attempts is None else spec.max_attempts,
        last_error=None,
        created_at=NOW,
        updated_at=NOW,
        key=spec.job_key,
        locked_at=None,
        locked_by=None,
        revision=0,
        flags={flag: True for flag in spec.flags} if spec.flags else None,
    )


def test_the_issue_example_pairs_each_spec_with_its_own_row_in_any_order() -> None:
    jobs = [new_job(t, {"i": i}) for i, t in enumerate(["a", "b", "a", "c", "b"])]
    rows = [row_for(job) for job in jobs]
    for order in itertools.permutations(rows):
        paired = pair_rows(jobs, list(order))
        assert paired == rows


def test_rows_are_told_apart_by_every_stored_field() -> None:
    later = NOW + timedelta(hours=1)
    jobs = [
        new_job("t"),
        new_job("t", queue_name="q"),
        new_job("t", priority=3),
        new_job("t", max_attempts=2),
        new_job("t", flags=("f",)),
        new_job("t", run_at=later),
        new_job("u"),
        new_job("t", {"x": 1}),
    ]
    rows = [row_for(job) for job in jobs]
    assert pair_rows(jobs, rows[::-1]) == rows


def test_a_job_without_run_at_takes_the_row_a_timed_job_left() -> None:
    # Both jobs differ only in run_at; the untimed one got the database's clock, which may
    # equal the other's run_at. Whichever order, each job gets a row with its values.
    timed, untimed = new_job("t", run_at=NOW), new_job("t")
    rows = [row_for(timed), row_for(untimed, run_at=NOW)]
    for order in (rows, rows[::-1]):
        paired = pair_rows([untimed, timed], order)
        assert {job.id for job in paired if job} == {row.id for row in rows}
        assert all(job is not None and job.run_at == NOW for job in paired)


def test_identical_specs_may_pair_either_way_but_each_gets_its_own_row() -> None:
    jobs = [new_job("t", {"same": True}) for _ in range(3)]
    rows = [row_for(job) for job in jobs]
    paired = pair_rows(jobs, rows[::-1])
    assert sorted(job.id for job in paired if job) == sorted(row.id for row in rows)


def test_a_keyed_job_is_paired_by_key_even_when_its_payload_was_merged() -> None:
    batch = new_job("batch", [{"n": 2}], job_key="k")
    other = new_job("batch", [{"n": 2}])
    merged = row_for(batch, payload=[{"n": 1}, {"n": 2}])
    fresh = row_for(other)
    assert pair_rows([other, batch], [merged, fresh]) == [fresh, merged]


def test_a_keyed_job_whose_row_is_missing_is_paired_with_none() -> None:
    raced, plain = new_job("t", job_key="k"), new_job("t")
    row = row_for(plain)
    assert pair_rows([raced, plain], [row]) == [None, row]


def test_the_same_key_twice_pairs_both_jobs_with_the_row_of_the_later_spec() -> None:
    first = new_job("t", {"v": 1}, job_key="k")
    later = new_job("u", {"v": 2}, job_key="k")
    row = row_for(later)
    assert pair_rows([first, later], [row]) == [row, row]


def test_a_row_that_belongs_to_no_job_is_an_error() -> None:
    job = new_job("t")
    with pytest.raises(GraphileWorkerError, match="do not match the jobs sent"):
        pair_rows([job], [row_for(job), row_for(new_job("stray"))])


def test_a_row_with_a_key_nobody_sent_is_an_error() -> None:
    with pytest.raises(GraphileWorkerError, match="belong to none of the jobs"):
        pair_rows([], [row_for(new_job("t", job_key="k"))])


def test_an_unkeyed_job_without_its_row_is_an_error() -> None:
    job = new_job("t", {"mine": 1})
    with pytest.raises(GraphileWorkerError, match="no row was returned for the unkeyed 't' job"):
        pair_rows([job], [row_for(job, payload={"other": 1})])


# --- the fast path: rows already in input order ----------------------------------------------


def varied_jobs() -> list[NewJob]:
    return [
        new_job("a", {"i": 0}),
        new_job("a", {"i": 1}, queue_name="q"),
        new_job("b", job_key="k"),
        new_job("a", {"i": 0}, flags=("f", "g")),
        new_job("a", {"i": 0}, run_at=NOW + timedelta(minutes=1), priority=2, max_attempts=3),
    ]


def test_rows_in_input_order_are_taken_as_they_are() -> None:
    jobs = varied_jobs()
    rows = [row_for(job) for job in jobs]
    assert in_input_order(jobs, rows)
    paired = pair_rows(jobs, rows)
    assert paired == rows
    assert all(got is row for got, row in zip(paired, rows, strict=True))


def test_every_shuffle_of_the_rows_is_still_paired_right() -> None:
    jobs = varied_jobs()
    rows = [row_for(job) for job in jobs]
    for order in itertools.permutations(range(len(rows))):
        shuffled = [rows[i] for i in order]
        assert in_input_order(jobs, shuffled) == (list(order) == sorted(order))
        assert pair_rows(jobs, shuffled) == rows


@pytest.mark.parametrize(
    ("changed", "field"),
    [
        ({"payload_json": '{"i":9}'}, "payload"),
        ({"task_identifier": "other"}, "task"),
        ({"queue_name": "other"}, "queue"),
        ({"priority": 7}, "priority"),
        ({"max_attempts": 9}, "max_attempts"),
        ({"flags": {"f": True}}, "flags"),
        ({"flags": None}, "no flags"),
        ({"run_at": NOW}, "run_at"),
        ({"key": "stray"}, "a key on an unkeyed row"),
    ],
)
def test_a_row_in_place_with_another_value_is_not_taken_as_in_order(
    changed: dict[str, Any], field: str
) -> None:
    job = new_job("a", {"i": 0}, queue_name="q", flags=("f", "g"), run_at=NOW + timedelta(1))
    row = dataclasses.replace(row_for(job), **changed)
    assert not in_input_order([job], [row]), field


def test_an_untimed_job_accepts_any_run_at_in_place() -> None:
    job = new_job("a")
    row = row_for(job, run_at=NOW + timedelta(days=3))
    assert in_input_order([job], [row])


def test_a_keyed_row_in_place_is_matched_by_key_alone() -> None:
    job = new_job("batch", [{"n": 2}], job_key="k")
    merged = row_for(job, payload=[{"n": 1}, {"n": 2}])
    assert in_input_order([job], [merged])
    assert not in_input_order([job], [dataclasses.replace(merged, key="other")])


def test_a_missing_or_extra_row_leaves_the_fast_path() -> None:
    raced, plain = new_job("t", job_key="k"), new_job("t")
    row = row_for(plain)
    assert not in_input_order([raced, plain], [row])
    assert pair_rows([raced, plain], [row]) == [None, row]
    assert not in_input_order([plain], [row, row_for(plain)])


def test_swapped_rows_of_one_task_are_paired_by_payload() -> None:
    # The shape of the bug: one task, rows returned in another order than the specs.
    jobs = [new_job("same", {"i": i}) for i in range(4)]
    rows = [row_for(job) for job in jobs]
    swapped = [rows[1], rows[0], rows[3], rows[2]]
    assert not in_input_order(jobs, swapped)
    assert pair_rows(jobs, swapped) == rows
