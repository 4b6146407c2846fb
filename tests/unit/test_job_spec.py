"""JobSpec, RawJobSpec, JobKeyMode and the argument checks the add/admin methods run first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import pydantic
import pytest

from sqlalchemy_graphile import (
    BatchTask,
    InvalidJobSpecError,
    InvalidPayloadError,
    InvalidTaskError,
    JobKeyMode,
    JobSpec,
    JobSpecValidationError,
    RawJobSpec,
    Task,
)
from sqlalchemy_graphile import _job_input as job_input
from sqlalchemy_graphile.context import WorkerContext
from sqlalchemy_graphile.job_spec import check_task_identifier, check_text

# --- JobSpec ----------------------------------------------------------------------------------


def test_every_field_defaults_to_none() -> None:
    assert JobSpec().model_dump() == {
        "queue_name": None,
        "run_at": None,
        "max_attempts": None,
        "job_key": None,
        "job_key_mode": None,
        "priority": None,
        "flags": None,
    }


def test_valid_values_are_kept() -> None:
    run_at = datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2)))
    spec = JobSpec(
        queue_name="q" * 128,
        run_at=run_at,
        max_attempts=32767,
        job_key="k" * 512,
        job_key_mode="preserve_run_at",
        priority=-32768,
        flags=["a", "b"],
    )
    assert spec.run_at == run_at
    assert spec.job_key_mode is JobKeyMode.PRESERVE_RUN_AT
    assert spec.flags == ("a", "b")
    assert (spec.max_attempts, spec.priority) == (32767, -32768)


def test_is_immutable_and_hashable() -> None:
    spec = JobSpec(queue_name="q", flags=("a",))
    with pytest.raises(JobSpecValidationError, match="frozen"):
        spec.queue_name = "other"  # type: ignore[misc]
    assert hash(spec) == hash(JobSpec(queue_name="q", flags=("a",)))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("run_at", datetime(2030, 1, 1), "timezone"),
        ("queue_name", "", "at least 1"),
        ("queue_name", "q" * 129, "at most 128"),
        ("queue_name", "a\x00b", "NUL"),
        ("queue_name", "\ud800", "unicode"),
        ("job_key", "", "at least 1"),
        ("job_key", "k" * 513, "at most 512"),
        ("job_key", "\x00", "NUL"),
        ("max_attempts", 0, "greater than or equal to 1"),
        ("max_attempts", 32768, "less than or equal to 32767"),
        ("priority", 32768, "less than or equal to 32767"),
        ("priority", -32769, "greater than or equal to -32768"),
        ("job_key_mode", "dedupe", "replace"),
        ("flags", ["ok", "\x00"], "NUL"),
        ("flags", ["\udfff"], "(?i)unicode"),
        ("unknown", 1, "Extra inputs"),
    ],
)
def test_invalid_values_raise_invalid_job_spec_error(field: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=message) as raised:
        JobSpec(**{field: value})
    # Also pydantic's own error, naming the field, for code written against pydantic.
    assert isinstance(raised.value, pydantic.ValidationError)
    assert isinstance(raised.value, JobSpecValidationError)
    assert [e["loc"][0] for e in raised.value.errors()] == [field]
    assert str(raised.value).splitlines()[1].startswith(field)


def test_every_way_to_validate_a_spec_raises_invalid_job_spec_error() -> None:
    with pytest.raises(JobSpecValidationError, match="max_attempts"):
        JobSpec.model_validate({"max_attempts": 0})
    with pytest.raises(JobSpecValidationError, match="priority"):
        JobSpec.model_validate_json('{"priority": "high"}')
    with pytest.raises(JobSpecValidationError, match="priority"):
        JobSpec.model_validate_strings({"priority": "high"})
    assert JobSpec.model_validate_json('{"priority": 3}') == JobSpec(priority=3)


def test_several_bad_fields_are_named_in_one_error() -> None:
    with pytest.raises(JobSpecValidationError) as raised:
        JobSpec(queue_name="", max_attempts=0)
    assert [e["loc"] for e in raised.value.errors()] == [("queue_name",), ("max_attempts",)]
    assert str(raised.value).startswith("2 validation errors for JobSpec")


def test_job_key_modes_have_graphile_worker_names() -> None:
    assert [m.value for m in JobKeyMode] == ["replace", "preserve_run_at", "unsafe_dedupe"]


# --- RawJobSpec and identifiers ----------------------------------------------------------------


def test_raw_job_spec_checks_identifier_and_spec() -> None:
    assert RawJobSpec("t").payload is None
    with pytest.raises(InvalidJobSpecError, match="empty"):
        RawJobSpec("")
    with pytest.raises(InvalidJobSpecError, match="JobSpec"):
        RawJobSpec("t", {}, {"queue_name": "q"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("", "empty"),
        ("t" * 129, "129 characters"),
        ("a\x00", "NUL"),
        ("\ud800", "surrogate"),
        (None, "str"),
        (b"bytes", "str"),
    ],
)
def test_check_task_identifier_refuses(identifier: Any, message: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=message):
        check_task_identifier(identifier)


@pytest.mark.parametrize("identifier", ["t", "t" * 128, "nested/folder:task", "😀", "e\u0301"])
def test_check_task_identifier_accepts(identifier: str) -> None:
    assert check_task_identifier(identifier) == identifier


def test_check_text() -> None:
    assert check_text("fine ' $$ %s") == "fine ' $$ %s"
    with pytest.raises(ValueError, match="thing must not contain NUL"):
        check_text("\x00", "thing")


# --- argument checks of the add methods --------------------------------------------------------


class Mail(Task):
    IDENTIFIER: ClassVar[str] = "mail"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Sms(Task):
    IDENTIFIER: ClassVar[str] = "sms"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Line(BatchTask):
    IDENTIFIER: ClassVar[str] = "line"
    n: int

    @classmethod
    async def run_batch(cls, items: list[Line], ctx: WorkerContext) -> None:
        return None


class AbstractTask(Task):
    """No IDENTIFIER: a base for other tasks."""


def test_from_task_encodes_the_model() -> None:
    job = job_input.from_task(Mail(to="a"), JobSpec(queue_name="q"))
    assert (job.identifier, job.payload_json, job.spec.queue_name) == ("mail", '{"to":"a"}', "q")
    assert job_input.from_task(Mail(to="a")).spec == JobSpec()


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (Line(n=1), "add_batch_job"),
        ({"to": "a"}, "Task instance"),
        (Mail, "Task instance"),
        (AbstractTask(), "no IDENTIFIER"),
    ],
)
def test_from_task_refuses_non_tasks(task: Any, message: str) -> None:
    with pytest.raises(InvalidTaskError, match=message):
        job_input.from_task(task)


def test_from_tasks_requires_one_type_and_pairs() -> None:
    jobs = job_input.from_tasks([(Mail(to="a"), None), (Mail(to="b"), JobSpec(priority=1))])
    assert [j.payload_json for j in jobs] == ['{"to":"a"}', '{"to":"b"}']
    with pytest.raises(InvalidTaskError, match="one type"):
        job_input.from_tasks([(Mail(to="a"), None), (Sms(to="b"), None)])
    with pytest.raises(InvalidTaskError, match="pairs"):
        job_input.from_tasks([(Mail(to="a"),)])  # type: ignore[list-item]
    with pytest.raises(InvalidTaskError, match="list of"):
        job_input.from_tasks(Mail(to="a"))  # type: ignore[arg-type]


def test_from_raw_defaults_payload_to_an_empty_object() -> None:
    assert job_input.from_raw("t").payload_json == "{}"
    assert job_input.from_raw("t", []).payload_json == "[]"
    with pytest.raises(InvalidJobSpecError, match="JobSpec"):
        job_input.from_raw("t", {}, "q")


def test_from_raw_specs_requires_raw_job_specs() -> None:
    assert len(job_input.from_raw_specs([RawJobSpec("a"), RawJobSpec("b")])) == 2
    with pytest.raises(InvalidJobSpecError, match="RawJobSpec"):
        job_input.from_raw_specs([("a", {})])  # type: ignore[list-item]
    with pytest.raises(InvalidJobSpecError, match="list"):
        job_input.from_raw_specs(RawJobSpec("a"))  # type: ignore[arg-type]


def test_from_batch_builds_one_array_of_one_type() -> None:
    job = job_input.from_batch((Line(n=n) for n in range(3)), JobSpec(job_key="k"))
    assert (job.identifier, job.payload_json) == ("line", '[{"n":0},{"n":1},{"n":2}]')
    with pytest.raises(InvalidPayloadError, match="at least one"):
        job_input.from_batch([])
    with pytest.raises(InvalidTaskError, match="BatchTask items"):
        job_input.from_batch([Mail(to="a")])  # type: ignore[list-item]
    with pytest.raises(InvalidTaskError, match="list of BatchTask"):
        job_input.from_batch(Line(n=1))  # type: ignore[arg-type]


def _keyed(key: str | None, mode: JobKeyMode | None = None) -> job_input.NewJob:
    return job_input.from_raw("t", {}, JobSpec(job_key=key, job_key_mode=mode))


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ([], False),
        ([_keyed(None), _keyed("a")], False),
        ([_keyed("a", JobKeyMode.REPLACE), _keyed("b")], False),
        ([_keyed("a", JobKeyMode.PRESERVE_RUN_AT), _keyed("b", JobKeyMode.PRESERVE_RUN_AT)], True),
        # a mode without a key has no effect, as in the SQL function
        ([_keyed(None, JobKeyMode.PRESERVE_RUN_AT), _keyed("b")], False),
    ],
)
def test_bulk_preserve_run_at(jobs: list[job_input.NewJob], expected: bool) -> None:
    assert job_input.bulk_preserve_run_at(jobs) is expected


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([_keyed("a", JobKeyMode.UNSAFE_DEDUPE)], "UNSAFE_DEDUPE"),
        ([_keyed(None, JobKeyMode.UNSAFE_DEDUPE)], "UNSAFE_DEDUPE"),
        ([_keyed("a"), _keyed("a")], "more than once"),
        ([_keyed("a"), _keyed("b", JobKeyMode.PRESERVE_RUN_AT)], "share"),
    ],
)
def test_bulk_preserve_run_at_refuses(jobs: list[job_input.NewJob], message: str) -> None:
    with pytest.raises(InvalidJobSpecError, match=message):
        job_input.bulk_preserve_run_at(jobs)


# --- argument checks of the admin methods ------------------------------------------------------


def test_job_key() -> None:
    assert job_input.job_key("k" * 512) == "k" * 512
    for bad, message in [("", "1..512"), ("k" * 513, "1..512"), ("\x00", "NUL"), (1, "str")]:
        with pytest.raises(InvalidJobSpecError, match=message):
            job_input.job_key(bad)


def test_job_ids() -> None:
    assert job_input.job_ids((1, 2**63 - 1)) == [1, 2**63 - 1]
    assert job_input.job_ids(range(3)) == [0, 1, 2]
    for bad, message in [([1.0], "ints"), ([False], "ints"), ("12", "list"), ([2**63], "bigint")]:
        with pytest.raises(InvalidJobSpecError, match=message):
            job_input.job_ids(bad)


def test_text_list_and_optional_text() -> None:
    assert job_input.text_list(("a", "b"), "ids") == ["a", "b"]
    with pytest.raises(InvalidJobSpecError, match="single value"):
        job_input.text_list("ab", "ids")
    with pytest.raises(InvalidJobSpecError, match="NUL"):
        job_input.text_list(["\x00"], "ids")
    assert job_input.optional_text(None, "reason") is None
    with pytest.raises(InvalidJobSpecError, match="reason must be a str"):
        job_input.optional_text(3, "reason")


def test_optional_smallint_and_datetime() -> None:
    assert job_input.optional_smallint(None, "p") is None
    assert job_input.optional_smallint(0, "p") == 0
    with pytest.raises(InvalidJobSpecError, match="between 1 and 32767"):
        job_input.optional_smallint(0, "max_attempts", minimum=1)
    with pytest.raises(InvalidJobSpecError, match="an int"):
        job_input.optional_smallint(True, "p")
    aware = datetime(2030, 1, 1, tzinfo=UTC)
    assert job_input.optional_aware_datetime(aware, "run_at") == aware
    with pytest.raises(InvalidJobSpecError, match="timezone-aware"):
        job_input.optional_aware_datetime(datetime(2030, 1, 1), "run_at")
