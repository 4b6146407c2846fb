"""``sqlalchemy_graphile.testing.run_jobs``: the queued jobs run inside the test's own
transaction with the worker's statements, on asyncpg, psycopg 3 (sync and async) and
psycopg2; nothing is committed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import (
    AsyncJobHelpers,
    BatchJobError,
    BatchTask,
    BatchTaskResult,
    ConfigurationError,
    InvalidTaskError,
    JobHelpers,
    JobRunResult,
    JobSpec,
    JobToSchedule,
    RawJobSpec,
    SchemaNotInstalledError,
    Task,
    WorkerContext,
    WorkerPlugin,
)
from sqlalchemy_graphile import JobRun as PluginJobRun
from sqlalchemy_graphile.tasks import AnyTaskType
from sqlalchemy_graphile.testing import (
    JobFailedError,
    RanJob,
    assert_enqueued,
    assert_not_enqueued,
    enqueued_jobs,
    run_jobs,
)

from ._outer_transaction import SCHEMES, Outer, outer_transaction, resolved

T = TypeVar("T")


@dataclass
class Log:
    """An extension the tasks below record what they did in."""

    entries: list[str] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)


def _log(ctx: WorkerContext) -> Log:
    log = ctx.get_ext(Log)
    assert log is not None
    return log


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str

    async def run(self, ctx: WorkerContext) -> None:
        _log(ctx).entries.append(f"email {self.to} attempt {ctx.job.attempts}")
        if self.to.startswith("bounce"):
            raise ValueError(f"{self.to} bounced")


class SignUp(Task):
    """Adds a follow-up job through its context."""

    IDENTIFIER: ClassVar[str] = "sign_up"
    email: str

    async def run(self, ctx: WorkerContext) -> None:
        _log(ctx).entries.append(f"sign up {self.email}")
        await ctx.add_job(SendEmail(to=self.email), JobSpec(queue_name="mail"))
        await ctx.add_raw_job("audit", [{"event": f"signup:{self.email}"}])


class Audit(BatchTask):
    IDENTIFIER: ClassVar[str] = "audit"
    event: str

    @classmethod
    async def run_batch(cls, items: list[Audit], ctx: WorkerContext) -> BatchTaskResult:
        _log(ctx).entries.append("audit " + ",".join(item.event for item in items))
        return BatchTaskResult.from_outcomes(
            [ValueError(f"{item.event} refused") if "bad" in item.event else None for item in items]
        )


class Resize(Task):
    """A synchronous task: it runs in a thread, as under a worker."""

    IDENTIFIER: ClassVar[str] = "resize"
    image: int

    def run(self, ctx: WorkerContext) -> None:
        _log(ctx).entries.append(f"resize {self.image}")
        _log(ctx).threads.append(threading.current_thread().name)


TASKS: list[AnyTaskType] = [SendEmail, SignUp, Audit, Resize]


class RunOuter(Outer):
    """:class:`Outer`, running jobs with :func:`run_jobs` in its transaction."""

    async def run(self, **options: Any) -> list[RanJob]:
        log = options.pop("log", None) or Log()
        if isinstance(self.session, AsyncSession):
            return await run_jobs(self.session, TASKS, extensions=[log], **options)
        return run_jobs(self.session, TASKS, extensions=[log], **options)

    async def scalar(self, sql: str) -> Any:
        if isinstance(self.session, AsyncSession):
            return await self.session.scalar(text(sql))
        return self.session.scalar(text(sql))


@pytest.fixture(params=list(SCHEMES))
async def outer(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[RunOuter]:
    async with outer_transaction(request.param, db_url) as (session, connection):
        yield RunOuter(session, connection)


def _committed_jobs(db: psycopg.Connection) -> int:
    row = db.execute("select count(*) from graphile_worker._private_jobs").fetchone()
    assert row is not None
    return int(row[0])


async def test_jobs_and_their_follow_ups_run_in_the_tests_transaction(
    outer: RunOuter, db: psycopg.Connection
) -> None:
    await outer.add("add_job", SignUp(email="ada@example.com"))
    await outer.add("add_job", Resize(image=7), JobSpec(priority=5))
    await outer.commit()  # only the session's savepoint ends
    log = Log()

    runs = await outer.run(log=log)

    assert [(run.job.task_identifier, run.status) for run in runs] == [
        ("sign_up", "completed"),
        ("send_email", "completed"),  # a follow-up, in queue "mail"
        ("audit", "completed"),
        ("resize", "completed"),  # priority 5 runs after the others
    ]
    assert all(run.succeeded and run.error is None and run.last_error is None for run in runs)
    assert runs[1].job.queue_name == "mail"
    assert [run.job.attempts for run in runs] == [1, 1, 1, 1]
    assert log.entries == [
        "sign up ada@example.com",
        "email ada@example.com attempt 1",
        "audit signup:ada@example.com",
        "resize 7",
    ]
    assert log.threads == ["run_jobs_0"], "a sync task runs in a thread, as under a worker"
    await resolved(assert_not_enqueued(outer.session))  # completed jobs are deleted
    assert (
        await outer.scalar(
            "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
        )
        == 0
    )
    assert _committed_jobs(db) == 0, "nothing was committed"
    assert await outer.run() == [], "nothing is left to run"


async def test_a_failure_is_retried_with_backoff_until_no_attempts_are_left(
    outer: RunOuter,
) -> None:
    spec = JobSpec(max_attempts=2, queue_name="mail", job_key="bounce")
    await outer.add("add_job", SendEmail(to="bounce@example.com"), spec)

    [first] = await outer.run()

    assert first.status == "failed"
    assert isinstance(first.error, ValueError)
    assert first.last_error == "ValueError: bounce@example.com bounced"
    assert str(first) == (
        f"job {first.job.id} ('send_email'), attempt 1 of 2: failed: "
        "ValueError: bounce@example.com bounced"
    )
    [entry] = await resolved(assert_enqueued(outer.session, SendEmail))
    assert entry.job.attempts == 1
    assert entry.job.last_error == first.last_error
    assert entry.job.locked_by is None
    assert entry.job.key == "bounce"
    now = await outer.scalar("select now()")
    # Graphile Worker's backoff: exp(attempts) seconds after now().
    assert entry.job.run_at == now + timedelta(seconds=2.718281828459045)
    assert await outer.run() == [], "the retry is not due yet"

    [second] = await outer.run(run_scheduled=True)

    assert second.job.id == first.job.id
    assert second.status == "permanently_failed"
    assert second.job.attempts == 2
    [entry] = await resolved(assert_enqueued(outer.session, SendEmail))
    assert entry.job.is_permanently_failed
    assert await outer.run(run_scheduled=True) == [], "a job without attempts never runs"
    assert (
        await outer.scalar(
            "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
        )
        == 0
    ), "the queue was unlocked after each failure"


async def test_a_batch_keeps_only_its_failed_items(outer: RunOuter) -> None:
    items = [Audit(event="a"), Audit(event="bad b"), Audit(event="c"), Audit(event="bad d")]
    await outer.add("add_batch_job", items)

    [run] = await outer.run()

    assert run.status == "failed"
    assert isinstance(run.error, BatchJobError)
    assert [str(error) for error in run.error.errors] == ["bad b refused", "bad d refused"]
    assert run.last_error == "Batch failures:\nbad b refused\nbad d refused"
    left = await resolved(enqueued_jobs(outer.session, Audit))
    assert [item.payload.event for item in left] == ["bad b", "bad d"]


async def test_scheduled_jobs_wait_unless_asked_for(outer: RunOuter) -> None:
    later = await outer.scalar("select now() + interval '1 hour'")
    await outer.add("add_job", SendEmail(to="later@example.com"), JobSpec(run_at=later))
    await outer.add("add_job", SendEmail(to="now@example.com"))
    log = Log()

    assert [run.job.payload["to"] for run in await outer.run(log=log)] == ["now@example.com"]
    assert [run.job.payload["to"] for run in await outer.run(log=log, run_scheduled=True)] == [
        "later@example.com"
    ]


async def test_limit_stops_after_that_many_runs(outer: RunOuter) -> None:
    await outer.add("add_jobs", [(SendEmail(to=f"u{i}@example.com"), None) for i in range(3)])

    assert len(await outer.run(limit=2)) == 2
    assert [run.job.payload["to"] for run in await outer.run(limit=2)] == ["u2@example.com"]


async def test_raise_on_failure_raises_after_recording_the_failure(outer: RunOuter) -> None:
    await outer.add("add_job", SendEmail(to="ok@example.com"))
    await outer.add("add_job", SendEmail(to="bounce@example.com"))
    await outer.add("add_job", SendEmail(to="never@example.com"))

    with pytest.raises(JobFailedError, match=r"bounce@example\.com bounced") as raised:
        await outer.run(raise_on_failure=True)

    assert isinstance(raised.value.__cause__, ValueError)
    assert raised.value.run.status == "failed"
    assert [run.status for run in raised.value.runs] == ["completed", "failed"]
    left = await resolved(enqueued_jobs(outer.session, SendEmail))
    assert [(e.payload.to, e.job.attempts) for e in left] == [
        ("bounce@example.com", 1),
        ("never@example.com", 0),
    ]


async def test_only_the_given_tasks_and_unforbidden_flags_run(outer: RunOuter) -> None:
    await outer.add("add_raw_jobs", [RawJobSpec("someone_else", {"n": 1})])
    await outer.add("add_job", SendEmail(to="gpu@example.com"), JobSpec(flags=("gpu",)))
    await outer.add("add_job", SendEmail(to="cpu@example.com"))

    runs = await outer.run(forbidden_flags=["gpu"])

    assert [run.job.payload["to"] for run in runs] == ["cpu@example.com"]
    left = await resolved(enqueued_jobs(outer.session))
    assert [entry.job.task_identifier for entry in left] == ["someone_else", "send_email"]


async def test_a_rollback_leaves_nothing_behind(db_url: str, db: psycopg.Connection) -> None:
    engine = create_async_engine(db_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    async with engine.connect() as connection:
        transaction = await connection.begin()
        async with AsyncSession(bind=connection) as session:
            await AsyncJobHelpers(session).add_job(SignUp(email="ada@example.com"))
            runs = await run_jobs(session, TASKS, extensions=[Log()])
            assert len(runs) == 3
            await AsyncJobHelpers(session).add_job(SendEmail(to="bounce@example.com"))
            await run_jobs(session, TASKS, extensions=[Log()])
            await assert_enqueued(session, SendEmail, to="bounce@example.com")
        await transaction.rollback()
    await engine.dispose()
    assert _committed_jobs(db) == 0
    assert db.execute("select count(*) from graphile_worker._private_tasks").fetchone() == (0,)


class WhereAmI(Task):
    """Records the thread and the event loop its async code runs on."""

    IDENTIFIER: ClassVar[str] = "where_am_i"

    async def run(self, ctx: WorkerContext) -> None:
        loop = asyncio.get_running_loop()
        _log(ctx).threads.append(threading.current_thread().name)
        _log(ctx).entries.append(f"loop {id(loop)}")


async def test_a_sync_session_runs_async_tasks_even_inside_a_running_loop(
    sync_engine: Any,
) -> None:
    # This test runs on pytest-asyncio's loop; a sync session's tasks get a loop of their
    # own, in another thread.
    with Session(sync_engine) as session:
        JobHelpers(session).add_job(WhereAmI())
        log = Log()
        [run] = run_jobs(session, [WhereAmI], extensions=[log])
        assert run.succeeded
        session.rollback()
    assert log.threads != [threading.current_thread().name]
    assert log.entries != [f"loop {id(asyncio.get_running_loop())}"]


def test_a_sync_session_outside_any_loop_leaves_the_threads_loop_alone(sync_engine: Any) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with Session(sync_engine) as session:
            JobHelpers(session).add_job(WhereAmI())
            log = Log()
            [run] = run_jobs(session, [WhereAmI], extensions=[log])
            assert run.succeeded
            session.rollback()
        assert log.threads == [threading.current_thread().name], "a private loop, here"
        assert log.entries != [f"loop {id(loop)}"]
        assert asyncio.get_event_loop() is loop, "the thread's loop is left as it was"
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class Vanish(Task):
    """Deletes its own job row through the test's session (an extension)."""

    IDENTIFIER: ClassVar[str] = "vanish"

    async def run(self, ctx: WorkerContext) -> None:
        session = ctx.get_ext(AsyncSession)
        assert session is not None
        delete = "delete from graphile_worker._private_jobs where id = :id"
        await session.execute(text(delete), {"id": ctx.job.id})


async def test_an_outcome_that_finds_no_locked_job_is_a_warning(
    async_engine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncSession(async_engine) as session:
        job = await AsyncJobHelpers(session).add_job(Vanish())

        [run] = await run_jobs(session, [Vanish], extensions=[session])

        assert run.status == "completed"
        assert f"the outcome of job {job.id} (vanish) was not recorded" in caplog.text
        await session.rollback()


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"tasks": []}, ConfigurationError),
        ({"tasks": [object]}, InvalidTaskError),
        ({"tasks": [SendEmail, SendEmail]}, ConfigurationError),
        ({"limit": 0}, ConfigurationError),
        ({"limit": True}, ConfigurationError),
        ({"run_scheduled": "yes"}, ConfigurationError),
        ({"raise_on_failure": 1}, ConfigurationError),
        ({"forbidden_flags": "gpu"}, ConfigurationError),
        ({"forbidden_flags": [""]}, ConfigurationError),
        ({"extensions": [Log(), Log()]}, ConfigurationError),
        ({"schema": "bad schema"}, ValueError),
        ({"session": object()}, ConfigurationError),
    ],
)
def test_bad_arguments_raise_before_any_sql(arguments: dict[str, Any], error: type) -> None:
    # Nothing listens on this port: any SQL would raise a connection error instead.
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    with Session(engine) as session:
        target = arguments.pop("session", session)
        tasks = arguments.pop("tasks", [SendEmail])
        with pytest.raises(error):
            run_jobs(target, tasks, **arguments)
    engine.dispose()


async def test_a_database_without_the_schema_raises_schema_not_installed(
    empty_db_url: str,
) -> None:
    engine = create_async_engine(empty_db_url.replace("postgresql://", "postgresql+asyncpg://"))
    async with AsyncSession(engine) as session:
        with pytest.raises(SchemaNotInstalledError):
            await run_jobs(session, [SendEmail])
    await engine.dispose()


class _Hooks(WorkerPlugin):
    """Records the run hooks and gives every job a task schedules priority 3."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
        self.calls.append(f"schedule {job.identifier}")
        return JobToSchedule(
            job.identifier, job.payload, job.spec.model_copy(update={"priority": 3})
        )

    async def before_job_run(self, run: PluginJobRun) -> None:
        self.calls.append(f"before {run.job.task_identifier}")

    def after_job_run(self, run: PluginJobRun, result: JobRunResult) -> None:
        self.calls.append(f"after {run.job.task_identifier} {result.outcome.value}")


async def test_plugins_hooks_run_around_each_job_and_on_the_jobs_tasks_add(
    outer: RunOuter,
) -> None:
    await outer.add("add_job", SignUp(email="ada@example.com"))
    await outer.commit()
    hooks = _Hooks()

    runs = await outer.run(plugins=[hooks])

    assert [run.job.task_identifier for run in runs] == ["sign_up", "send_email", "audit"]
    assert [run.job.priority for run in runs] == [0, 3, 3]  # the follow-ups went through it
    assert hooks.calls == [
        "before sign_up",
        "schedule send_email",
        "schedule audit",
        "after sign_up success",
        "before send_email",
        "after send_email success",
        "before audit",
        "after audit success",
    ]


async def test_plugins_must_be_worker_plugins(outer: RunOuter) -> None:
    with pytest.raises(ConfigurationError, match=r"run_jobs\(\) plugins must be WorkerPlugin"):
        await outer.run(plugins=[object()])
