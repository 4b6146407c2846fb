"""The plugin registry without a database: which hooks are called, and how errors in
them are reported."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from sqlalchemy_graphile import (
    HookErrorEvent,
    Job,
    JobRecovery,
    JobRun,
    JobRunOutcome,
    JobRunResult,
    JobSpec,
    JobToSchedule,
    WorkerEvents,
    WorkerPlugin,
)
from sqlalchemy_graphile._job_input import NewJob
from sqlalchemy_graphile._plugins import Plugins

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _job() -> Job:
    return Job(
        id=1,
        task_identifier="note",
        queue_name=None,
        payload_json="{}",
        priority=0,
        run_at=NOW,
        attempts=1,
        max_attempts=25,
        last_error=None,
        created_at=NOW,
        updated_at=NOW,
        key=None,
        locked_at=NOW,
        locked_by="sgpool-dead",
        revision=0,
        flags=None,
    )


def _reported(plugins_of: list[WorkerPlugin]) -> tuple[Plugins, list[HookErrorEvent]]:
    events = WorkerEvents()
    reported: list[HookErrorEvent] = []
    events.on("hook:error", reported.append)
    return Plugins(plugins_of, events=events), reported


def test_only_overridden_hooks_count() -> None:
    class ScheduleOnly(WorkerPlugin):
        def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
            return job

    class AfterOnly(WorkerPlugin):
        def after_job_run(self, run: JobRun, result: JobRunResult) -> None:
            pass

    assert (Plugins([]).schedules, Plugins([]).runs) == (False, False)
    assert (Plugins([WorkerPlugin()]).schedules, Plugins([WorkerPlugin()]).runs) == (False, False)
    assert (Plugins([ScheduleOnly()]).schedules, Plugins([ScheduleOnly()]).runs) == (True, False)
    assert (Plugins([AfterOnly()]).schedules, Plugins([AfterOnly()]).runs) == (False, True)
    shared = Plugins([AfterOnly()])
    assert Plugins.of(shared) is shared
    assert list(shared) == list(shared._plugins)
    assert len(shared) == 1


def test_schedule_hooks_chain_in_order() -> None:
    class Append(WorkerPlugin):
        def __init__(self, mark: str) -> None:
            self.mark = mark

        def before_job_schedule(self, job: JobToSchedule) -> JobToSchedule:
            job.payload["marks"] = [*job.payload.get("marks", []), self.mark]
            return job

    plugins = Plugins([Append("a"), Append("b")])
    scheduled = plugins.schedule(NewJob("note", '{"x":1}', JobSpec()))
    assert scheduled.payload_json == '{"x":1,"marks":["a","b"]}'


async def test_recovery_hooks_are_called_and_reported() -> None:
    seen: list[JobRecovery] = []

    class Recovering(WorkerPlugin):
        async def on_job_recovery(self, recovery: JobRecovery) -> None:
            seen.append(recovery)
            await asyncio.sleep(0)
            raise RuntimeError("recovery hook failed")

    plugins, reported = _reported([Recovering()])
    recovery = JobRecovery(job=_job(), worker_id="sgpool-new", previous_worker_id="sgpool-dead")
    await plugins.job_recovered(recovery)
    assert seen == [recovery]
    assert [(e.name, e.hook, e.job) for e in reported] == [
        ("hook:error", "on_job_recovery", recovery.job)
    ]


async def test_sync_and_async_run_hooks_are_both_called() -> None:
    calls: list[str] = []

    class Mixed(WorkerPlugin):
        def before_job_run(self, run: JobRun) -> None:
            calls.append("before")

        async def after_job_run(self, run: JobRun, result: JobRunResult) -> None:
            calls.append(result.outcome)

    plugins, reported = _reported([Mixed()])
    run = JobRun(_job(), "sgpool-x")
    await plugins.before_run(run)
    await plugins.after_run(run, JobRunResult(JobRunOutcome.SUCCESS, 0.5))
    assert calls == ["before", "success"]
    assert reported == []
    assert run != JobRun(_job(), "sgpool-x")  # compared by identity


def test_the_base_hooks_do_nothing() -> None:
    plugin = WorkerPlugin()
    job = JobToSchedule("note", {}, JobSpec())
    assert plugin.before_job_schedule(job) is job
    run = JobRun(_job(), "sgpool-x")
    assert plugin.before_job_run(run) is None
    assert plugin.after_job_run(run, JobRunResult(JobRunOutcome.FAILURE, 1.0)) is None
    assert plugin.on_job_recovery(JobRecovery(_job(), "sgpool-x")) is None


@pytest.mark.parametrize("bad", ["plugin", 3, [object()]])
def test_bad_plugins_are_refused(bad: object) -> None:
    from sqlalchemy_graphile import ConfigurationError

    with pytest.raises(ConfigurationError):
        Plugins(bad)  # type: ignore[arg-type]
