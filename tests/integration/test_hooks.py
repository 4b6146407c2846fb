"""Plugins' hooks on a real database: ``before_job_schedule`` on every add path, the run
hooks around real runs, and hooks that raise."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Self

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sqlalchemy_graphile import (
    AsyncJobHelpers,
    BatchTask,
    ConfigurationError,
    HookErrorEvent,
    InvalidJobSpecError,
    JobHelpers,
    JobRunOutcome,
    JobScheduleRefusedError,
    JobScheduleSkippedError,
    JobSpec,
    JobToSchedule,
    RawJobSpec,
    Task,
    Worker,
    WorkerContext,
    WorkerPlugin,
    WorkerUtils,
)
from sqlalchemy_graphile._catalog import catalog_for
from sqlalchemy_graphile._plugins import Plugins
from sqlalchemy_graphile._store._adder import StoreAdder
from sqlalchemy_graphile._store._asyncpg import AsyncpgJobStore
from sqlalchemy_graphile.cli import EXIT_ERROR, EXIT_OK, main

from ._hook_plugins import CURRENT_RUN, Around, Broken, Stamp
from ._worker_support import Recorder, eventually, jobs, logged, make_worker, recorder


class Note(Task):
    IDENTIFIER: ClassVar[str] = "note"
    text: str = ""
    skip: bool = False
    refuse: bool = False

    async def run(self, ctx: WorkerContext) -> None:
        rec = recorder(ctx)
        rec.calls.append(("note", (self.model_dump(), CURRENT_RUN.get())))
        if self.text == "fail":
            raise ValueError("asked to fail")
        if self.text == "follow-up":
            await ctx.add_raw_job("raw", {"text": "added by the task"})


class Line(BatchTask):
    IDENTIFIER: ClassVar[str] = "line"
    n: int

    @classmethod
    async def run_batch(cls, items: list[Self], ctx: WorkerContext) -> None:
        recorder(ctx).calls.append(("line", [item.n for item in items]))


Adders = dict[str, Callable[..., Awaitable[Any]]]


@asynccontextmanager
async def _adders(kind: str, db_url: str, plugins: Iterable[WorkerPlugin]) -> AsyncIterator[Adders]:
    """The add methods of one add path, as coroutine functions, committing each add."""
    if kind == "JobHelpers":
        engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))

        def sync_call(name: str) -> Callable[..., Awaitable[Any]]:
            async def call(*args: Any) -> Any:
                with Session(engine) as session, session.begin():
                    return getattr(JobHelpers(session, plugins=plugins), name)(*args)

            return call

        yield {name: sync_call(name) for name in _METHODS + _COPY_METHODS}
        engine.dispose()
    elif kind == "AsyncJobHelpers":
        async_engine = create_async_engine(
            db_url.replace("postgresql://", "postgresql+asyncpg://"), poolclass=pool.NullPool
        )

        def async_call(name: str) -> Callable[..., Awaitable[Any]]:
            async def call(*args: Any) -> Any:
                async with AsyncSession(async_engine) as session, session.begin():
                    return await getattr(AsyncJobHelpers(session, plugins=plugins), name)(*args)

            return call

        yield {name: async_call(name) for name in _METHODS + _COPY_METHODS}
        await async_engine.dispose()
    elif kind == "WorkerUtils":
        async with WorkerUtils(db_url, plugins=plugins) as utils:
            yield {name: getattr(utils, name) for name in _METHODS + _COPY_METHODS}
    else:  # what a worker's tasks add through (ctx.add_job and friends)
        db_pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
        store = AsyncpgJobStore(db_pool, catalog_for("graphile_worker"), "sgpool-test")
        adder = StoreAdder(store, "graphile_worker", Plugins(plugins))
        yield {name: getattr(adder, name) for name in _METHODS}
        await db_pool.close()


#: The add methods of every path; the helpers and WorkerUtils also copy.
_METHODS = ("add_job", "add_jobs", "add_raw_job", "add_raw_jobs", "add_batch_job")
_COPY_METHODS = ("copy_jobs", "copy_raw_jobs")
_COPYING_KINDS = ("JobHelpers", "AsyncJobHelpers", "WorkerUtils")
_KINDS = (*_COPYING_KINDS, "WorkerContext")


def _stored(db: psycopg.Connection) -> list[tuple[str, Any, int]]:
    return [
        (identifier, payload, priority)
        for identifier, payload, priority in db.execute(
            "select t.identifier, j.payload, j.priority from graphile_worker._private_jobs j"
            " join graphile_worker._private_tasks t on t.id = j.task_id order by j.id"
        ).fetchall()
    ]


@pytest.mark.parametrize("kind", _KINDS)
async def test_before_job_schedule_rewrites_every_add(
    kind: str, db_url: str, db: psycopg.Connection
) -> None:
    async with _adders(kind, db_url, [Stamp()]) as add:
        await add["add_job"](Note(text="one"), None)
        await add["add_jobs"]([(Note(text="two"), None), (Note(text="three"), JobSpec())])
        await add["add_raw_job"]("raw", {"text": "four"}, None)
        await add["add_raw_jobs"]([RawJobSpec("raw", [{"text": "five"}, 5])])
        await add["add_batch_job"]([Line(n=6), Line(n=7)], None)
    stamp = {"stamp": "hooked"}
    assert _stored(db) == [
        ("note", {"text": "one", "skip": False, "refuse": False, **stamp}, 7),
        ("note", {"text": "two", "skip": False, "refuse": False, **stamp}, 7),
        ("note", {"text": "three", "skip": False, "refuse": False, **stamp}, 7),
        ("raw", {"text": "four", **stamp}, 7),
        ("raw", [{"text": "five", **stamp}, 5], 7),
        ("line", [{"n": 6, **stamp}, {"n": 7, **stamp}], 7),
    ]


class KeyEverything(WorkerPlugin):
    def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
        spec = job.spec.model_copy(update={"job_key": f"key:{job.identifier}"})
        return JobToSchedule(job.identifier, job.payload, spec)


@pytest.mark.parametrize("kind", _COPYING_KINDS)
async def test_before_job_schedule_rewrites_copied_jobs(
    kind: str, db_url: str, db: psycopg.Connection
) -> None:
    async with _adders(kind, db_url, [Stamp()]) as add:
        await add["copy_jobs"]([(Note(text="one"), None)])
        await add["copy_raw_jobs"]([RawJobSpec("raw", {"text": "two"})])
        with pytest.raises(JobScheduleRefusedError):
            await add["copy_raw_jobs"]([RawJobSpec("raw", {}), RawJobSpec("raw", {"refuse": 1})])
    async with _adders(kind, db_url, [KeyEverything()]) as add:
        with pytest.raises(InvalidJobSpecError, match="without a job_key"):
            await add["copy_raw_jobs"]([RawJobSpec("raw", {"text": "keyed"})])
    stamp = {"stamp": "hooked"}
    assert _stored(db) == [
        ("note", {"text": "one", "skip": False, "refuse": False, **stamp}, 7),
        ("raw", {"text": "two", **stamp}, 7),
    ]


@pytest.mark.parametrize("kind", _KINDS)
async def test_skip_and_refuse_add_nothing(kind: str, db_url: str, db: psycopg.Connection) -> None:
    async with _adders(kind, db_url, [Stamp()]) as add:
        with pytest.raises(JobScheduleSkippedError):
            await add["add_job"](Note(skip=True), None)
        with pytest.raises(JobScheduleRefusedError, match="refused by Stamp"):
            await add["add_raw_job"]("raw", {"refuse": True}, None)
        with pytest.raises(JobScheduleRefusedError):
            await add["add_jobs"]([(Note(text="fine"), None), (Note(refuse=True), None)])
        with pytest.raises(JobScheduleSkippedError):
            await add["add_raw_jobs"]([RawJobSpec("raw", {}), RawJobSpec("raw", {"skip": 1})])
    assert _stored(db) == []


async def test_a_raising_schedule_hook_is_reported_and_the_job_added_as_it_was(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    events, log = logged()
    async with WorkerUtils(db_url, plugins=[Broken(), Stamp()], events=events) as utils:
        await utils.add_raw_job("raw", {"text": "kept"})
        await utils.add_jobs([(Note(text="a"), None), (Note(text="b"), None)])
    # Broken's in-place change is dropped; Stamp, registered after it, still runs.
    assert [payload for _, payload, _ in _stored(db)] == [
        {"text": "kept", "stamp": "hooked"},
        {"text": "a", "skip": False, "refuse": False, "stamp": "hooked"},
        {"text": "b", "skip": False, "refuse": False, "stamp": "hooked"},
    ]
    reported = [e for e in log.events if isinstance(e, HookErrorEvent)]
    assert [(e.hook, e.task_identifier, e.pool_id) for e in reported] == [
        ("before_job_schedule", "raw", ""),
        ("before_job_schedule", "note", ""),
        ("before_job_schedule", "note", ""),
    ]
    assert isinstance(reported[0].plugin, Broken)
    assert str(reported[0].error) == "broken schedule hook"
    errors = [r for r in caplog.records if r.name == "sqlalchemy_graphile.hooks"]
    assert len(errors) == 3
    assert errors[0].levelno == logging.ERROR
    assert "Broken.before_job_schedule raised" in errors[0].getMessage()


async def test_a_hook_returning_a_bad_job_is_reported(db_url: str, db: psycopg.Connection) -> None:
    class Bad(WorkerPlugin):
        def before_job_schedule(self, job: Any) -> Any:
            if job.identifier == "line":
                return type(job)(job.identifier, {"not": "a list"}, job.spec)
            return {"not": "a JobToSchedule"}

    events, log = logged()
    async with WorkerUtils(db_url, plugins=[Bad()], events=events) as utils:
        await utils.add_raw_job("raw", {"text": "kept"})
        await utils.add_batch_job([Line(n=1)])
    assert [payload for _, payload, _ in _stored(db)] == [{"text": "kept"}, [{"n": 1}]]
    assert log.count("hook:error") == 2


async def test_run_hooks_wrap_each_run(db_url: str, db: psycopg.Connection) -> None:
    around = Around()
    rec = Recorder()
    events, log = logged()
    worker = make_worker(db_url, Note, Line, rec=rec, plugins=[around], events=events)
    async with WorkerUtils(db_url) as utils:
        ok = await utils.add_job(Note(text="ok"))
        failing = await utils.add_job(Note(text="fail"), JobSpec(max_attempts=1))
        batch = await utils.add_batch_job([Line(n=1), Line(n=2)])
    await worker.run_once()
    assert sorted(rec.seen("note"), key=lambda seen: seen[0]["text"]) == [
        ({"text": "fail", "skip": False, "refuse": False}, f"run of job {failing.id}"),
        ({"text": "ok", "skip": False, "refuse": False}, f"run of job {ok.id}"),
    ]
    assert rec.seen("line") == [[1, 2]]
    assert {run.job.id for run in around.before} == {ok.id, failing.id, batch.id}
    results = {run.job.id: (result, seen) for run, result, seen in around.after}
    assert results[ok.id][0].outcome is JobRunOutcome.SUCCESS
    assert results[ok.id][0].succeeded
    assert results[ok.id][0].error is None
    assert results[ok.id][1] == f"run of job {ok.id}"
    failed, _ = results[failing.id]
    assert failed.outcome is JobRunOutcome.FAILURE
    assert isinstance(failed.error, ValueError)
    assert failed.final
    assert all(result.duration >= 0 for result, _ in results.values())
    assert all(run.worker_id == log.events[0].pool_id for run in around.before)
    assert CURRENT_RUN.get() is None
    assert log.count("hook:error") == 0


async def test_raising_run_hooks_do_not_lose_the_job(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    events, log = logged()
    worker = make_worker(db_url, Note, rec=rec, plugins=[Broken()], events=events)
    async with WorkerUtils(db_url) as utils:
        await utils.add_job(Note(text="still runs"))
    await worker.run_once()
    assert [seen[0]["text"] for seen in rec.seen("note")] == ["still runs"]
    assert jobs(db) == []  # completed
    reported = [e for e in log.events if isinstance(e, HookErrorEvent)]
    assert [e.hook for e in reported] == ["before_job_run", "after_job_run"]
    assert all(e.job is not None and e.job.task_identifier == "note" for e in reported)
    assert reported[0].pool_id.startswith("sgotpool-")


async def test_jobs_added_by_a_task_pass_the_workers_plugins(
    db_url: str, db: psycopg.Connection
) -> None:
    rec = Recorder()
    worker = make_worker(db_url, Note, rec=rec, plugins=[Stamp()])
    async with WorkerUtils(db_url) as utils:
        await utils.add_job(Note(text="follow-up"))
    async with worker:
        await eventually(lambda: _stored(db)[-1:] and _stored(db)[-1][0] == "raw")
    assert _stored(db) == [("raw", {"text": "added by the task", "stamp": "hooked"}, 7)]


async def test_worker_utils_adds_through_the_workers_plugins(
    db_url: str, db: psycopg.Connection
) -> None:
    """``Worker.utils`` is for the application (the worker itself never makes it)."""
    rec = Recorder()
    worker = make_worker(db_url, Note, rec=rec, plugins=[Stamp()])
    job = await worker.utils.add_job(Note(text="by utils"))
    assert (job.payload["stamp"], job.priority) == ("hooked", 7)
    await worker.run_once()  # disposes the utils' engine on the way out
    assert [seen[0]["text"] for seen in rec.seen("note")] == ["by utils"]
    assert jobs(db) == []


def test_plugins_must_be_plugin_instances(db_url: str) -> None:
    with pytest.raises(ConfigurationError, match="WorkerPlugin"):
        Worker(db_url, tasks=[Note], plugins=[object()])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="WorkerPlugin"):
        WorkerUtils(db_url, plugins=[Stamp])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="WorkerEvents"):
        WorkerUtils(db_url, plugins=[Stamp()], events=object())  # type: ignore[arg-type]


def test_the_command_line_add_uses_its_plugins(
    db_url: str, db: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = "tests.integration._hook_plugins:Stamp"
    argv = ["-c", db_url, "--json", "add", "raw", "--plugin", plugin, "--payload"]
    assert main([*argv, '{"text": "cli"}']) == EXIT_OK
    added = json.loads(capsys.readouterr().out)
    assert (added["payload"], added["priority"]) == ({"text": "cli", "stamp": "hooked"}, 7)
    assert main([*argv, '{"refuse": true}']) == EXIT_ERROR
    assert "refused by Stamp" in capsys.readouterr().err
    assert main([*argv[:-3], "--plugin", "tests.integration._hook_plugins:CURRENT_RUN"]) == (
        EXIT_ERROR
    )
    assert "expected a WorkerPlugin" in capsys.readouterr().err
    assert len(jobs(db)) == 1
