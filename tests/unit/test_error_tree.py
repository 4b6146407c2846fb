"""One error tree: every documented bad input or bad state of the public API raises a
GraphileWorkerError that also is the matching built-in, before anything connects."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

import pydantic
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

import sqlalchemy_graphile as sg
from sqlalchemy_graphile import errors
from sqlalchemy_graphile.cli._main import _describe

#: A server nothing listens on: a call that reached the database would fail differently.
NOWHERE = "postgresql://nobody@127.0.0.1:1/nowhere"

#: The package, untyped: the calls below pass what the signatures forbid.
api: Any = sg


class Ping(sg.Task):
    IDENTIFIER: ClassVar[str] = "ping"

    async def run(self, ctx: sg.WorkerContext) -> None:
        return None


class Item(sg.BatchTask):
    IDENTIFIER: ClassVar[str] = "item"

    @classmethod
    async def run_batch(cls, items: list[Item], ctx: sg.WorkerContext) -> None:
        return None


def _bad_task_class() -> None:
    class Nameless(sg.Task):
        IDENTIFIER: ClassVar[str] = ""

        async def run(self, ctx: sg.WorkerContext) -> None:
            return None


def _helpers() -> Any:
    return api.JobHelpers(Session())


def _utils() -> Any:
    return api.WorkerUtils(create_async_engine(NOWHERE.replace("://", "+asyncpg://", 1)))


Call = Callable[[], Any]

#: (what, the call, the error class, the built-in it must also be)
CASES: list[tuple[str, Call, type[errors.GraphileWorkerError], type[Exception]]] = [
    # job specs
    (
        "JobSpec field",
        lambda: api.JobSpec(max_attempts=0),
        errors.JobSpecValidationError,
        ValueError,
    ),
    ("JobSpec field", lambda: api.JobSpec(run_at="soon"), errors.InvalidJobSpecError, ValueError),
    ("JobSpec unknown", lambda: api.JobSpec(bogus=1), errors.InvalidJobSpecError, ValueError),
    (
        "JobSpec assignment",
        lambda: setattr(sg.JobSpec(), "priority", 1),
        errors.InvalidJobSpecError,
        ValueError,
    ),
    ("RawJobSpec identifier", lambda: api.RawJobSpec(""), errors.InvalidJobSpecError, ValueError),
    (
        "RawJobSpec spec",
        lambda: api.RawJobSpec("t", spec={}),
        errors.InvalidJobSpecError,
        ValueError,
    ),
    # tasks and batch results
    ("Task IDENTIFIER", _bad_task_class, errors.InvalidTaskError, TypeError),
    (
        "BatchTaskResult index",
        lambda: api.BatchTaskResult({-1: "x"}),
        errors.InvalidBatchResultError,
        ValueError,
    ),
    (
        "BatchTaskResult failure",
        lambda: api.BatchTaskResult({0: 3}),
        errors.InvalidBatchResultError,
        TypeError,
    ),
    # adding jobs (refused before any SQL)
    ("add_job task", lambda: _helpers().add_job(object()), errors.InvalidTaskError, TypeError),
    ("add_job batch item", lambda: _helpers().add_job(Item()), errors.InvalidTaskError, TypeError),
    (
        "add_raw_job payload",
        lambda: _helpers().add_raw_job("t", {1, 2}),
        errors.PayloadNotSerializableError,
        TypeError,
    ),
    (
        "add_raw_job NaN",
        lambda: _helpers().add_raw_job("t", float("nan")),
        errors.InvalidPayloadError,
        ValueError,
    ),
    (
        "add_batch_job empty",
        lambda: _helpers().add_batch_job([]),
        errors.InvalidPayloadError,
        ValueError,
    ),
    ("remove_job key", lambda: _helpers().remove_job(""), errors.InvalidJobSpecError, ValueError),
    (
        "JobHelpers schema",
        lambda: api.JobHelpers(Session(), schema='bad"name'),
        errors.InvalidIdentifierError,
        ValueError,
    ),
    ("WorkerUtils database", lambda: api.WorkerUtils(42), errors.ConfigurationError, ValueError),
    (
        "WorkerUtils ids",
        lambda: _utils().complete_jobs(["x"]),
        errors.InvalidJobSpecError,
        ValueError,
    ),
    (
        "WorkerUtils cleanup",
        lambda: _utils().cleanup(tasks=["vacuum"]),
        errors.ConfigurationError,
        ValueError,
    ),
    # schema names
    (
        "schema name",
        lambda: api.validate_schema_name("1 bad"),
        errors.InvalidIdentifierError,
        ValueError,
    ),
    # workers
    ("Worker tasks", lambda: api.Worker(NOWHERE, tasks=[]), errors.ConfigurationError, ValueError),
    (
        "Worker task class",
        lambda: api.Worker(NOWHERE, tasks=[object]),
        errors.InvalidTaskError,
        TypeError,
    ),
    (
        "Worker option",
        lambda: api.Worker(NOWHERE, tasks=[Ping], concurrency=0),
        errors.ConfigurationError,
        ValueError,
    ),
    (
        "Worker schema",
        lambda: api.Worker(NOWHERE, tasks=[Ping], schema='x"'),
        errors.InvalidIdentifierError,
        ValueError,
    ),
    (
        "Worker database",
        lambda: api.Worker("mysql://h/db", tasks=[Ping]),
        errors.ConfigurationError,
        ValueError,
    ),
    (
        "Worker crontab",
        lambda: api.Worker(NOWHERE, tasks=[Ping], crontab="* * *"),
        errors.CrontabError,
        ValueError,
    ),
    (
        "Worker events",
        lambda: api.Worker(NOWHERE, tasks=[Ping], events=object()),
        errors.ConfigurationError,
        ValueError,
    ),
    (
        "event callback",
        lambda: api.WorkerEvents().on("job:success", 3),
        errors.InvalidCallbackError,
        TypeError,
    ),
    (
        "any-event callback",
        lambda: api.WorkerEvents().on_any(None),
        errors.InvalidCallbackError,
        TypeError,
    ),
    # cron
    ("crontab line", lambda: api.parse_crontab("61 * * * * task"), errors.CrontabError, ValueError),
    (
        "cron item",
        lambda: api.CronItem(task="", match="* * * * *"),
        errors.CrontabError,
        ValueError,
    ),
    (
        "cron options",
        lambda: api.CronItemOptions(backfill_period=timedelta(-1)),
        errors.CrontabError,
        ValueError,
    ),
]


async def _outcome(call: Call) -> None:
    result = call()
    if inspect.isawaitable(result):
        await result


@pytest.mark.parametrize(
    ("call", "error", "builtin"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_input_raises_a_graphile_worker_error(
    call: Call, error: type[errors.GraphileWorkerError], builtin: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        await _outcome(call)
    assert isinstance(raised.value, errors.GraphileWorkerError)
    assert isinstance(raised.value, builtin)
    assert str(raised.value), "the message says what is wrong"


def test_every_exported_error_is_in_the_tree_and_documented() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.GraphileWorkerError), name
        assert name in doc, f"the tree in the errors module docstring lacks {name}"
        assert getattr(sg, name) is cls, f"{name} is not exported by the package"


def test_a_job_spec_error_is_pydantics_error_too_and_reads_as_one_line() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        sg.JobSpec(queue_name="", priority=1 << 20)
    assert isinstance(raised.value, errors.InvalidJobSpecError)
    assert _describe(raised.value) == (
        "invalid JobSpec: queue_name: String should have at least 1 character; "
        "priority: Input should be less than or equal to 32767"
    )
