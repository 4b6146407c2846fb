"""WorkerUtils: the schema, the add methods and the admin methods on a real database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from sqlalchemy_graphile import (
    BatchTask,
    ConfigurationError,
    InvalidIdentifierError,
    InvalidJobSpecError,
    Job,
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    SchemaNotInstalledError,
    SchemaTooNewError,
    SchemaTooOldError,
    Task,
    WorkerUtils,
)
from sqlalchemy_graphile.context import JobAdder, WorkerContext

pytestmark = pytest.mark.schema_flavours


class Job3(Task):
    IDENTIFIER: ClassVar[str] = "job3"
    a: int

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Item(BatchTask):
    IDENTIFIER: ClassVar[str] = "items"
    a: int

    @classmethod
    async def run_batch(cls, items: list[Item], ctx: WorkerContext) -> None:
        return None


@pytest.fixture
async def utils(db_url: str) -> AsyncIterator[WorkerUtils]:
    async with WorkerUtils(db_url) as made:
        yield made


def rows(db: psycopg.Connection, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db.execute(sql, params).fetchall()]


def all_jobs(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return rows(
        db,
        "select id, task_identifier, queue_name, key, attempts, max_attempts, last_error,"
        " locked_by, run_at, revision from graphile_worker.jobs order by id",
    )


# --- construction ----------------------------------------------------------------------------


async def test_accepts_a_url_string_a_url_object_and_database_url(
    db_url: str, monkeypatch: pytest.MonkeyPatch, db: psycopg.Connection
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    for database in (db_url, make_url(db_url), None):
        async with WorkerUtils(database) as utils:
            assert utils.engine.dialect.driver == "asyncpg"
            await utils.add_raw_job("t")
    assert rows(db, "select count(*) from graphile_worker.jobs") == [(3,)]


async def test_an_engine_given_is_used_and_not_disposed(db_url: str) -> None:
    engine = create_async_engine(
        db_url.replace("postgresql://", "postgresql+psycopg_async://", 1), poolclass=pool.NullPool
    )
    try:
        async with WorkerUtils(engine) as utils:
            assert utils.engine is engine
            await utils.add_raw_job("t")
        async with engine.connect() as connection:  # still usable after close()
            assert (
                await connection.exec_driver_sql("select count(*) from graphile_worker.jobs")
            ).scalar() == 1
    finally:
        await engine.dispose()


def test_bad_options_are_refused(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        WorkerUtils()
    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        WorkerUtils(42)  # type: ignore[arg-type]
    sync_engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        WorkerUtils(sync_engine)  # type: ignore[arg-type]
    sync_engine.dispose()
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        WorkerUtils("sqlite:///x.db")
    with pytest.raises(InvalidIdentifierError):
        WorkerUtils(db_url, schema="bad schema")
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "other_schema")
    assert WorkerUtils(db_url).schema == "other_schema"


# --- schema ------------------------------------------------------------------------------------


async def test_migrate_installs_then_adopts_and_check_schema(empty_db_url: str) -> None:
    async with WorkerUtils(empty_db_url) as utils:
        with pytest.raises(SchemaNotInstalledError, match="alembic upgrade head"):
            await utils.check_schema()
        assert await utils.migrate() is True
        assert await utils.migrate() is False
        await utils.check_schema()
        job = await utils.add_job(Job3(a=1))
        assert job.task_identifier == "job3"


async def test_check_schema_refuses_too_new_and_too_old(
    utils: WorkerUtils, db: psycopg.Connection
) -> None:
    db.execute("insert into graphile_worker.migrations (id, breaking) values (999999, true)")
    with pytest.raises(SchemaTooNewError, match="999999") as caught:
        await utils.check_schema()
    assert caught.value.exit_code == 57
    db.execute("delete from graphile_worker.migrations where id >= 19")
    with pytest.raises(SchemaTooOldError):
        await utils.check_schema()


async def test_a_non_default_schema_works_end_to_end(empty_db_url: str) -> None:
    async with WorkerUtils(empty_db_url, schema="Jobs$Q") as utils:
        await utils.migrate()
        job = await utils.add_job(Job3(a=1), JobSpec(queue_name="q", job_key="k"))
        assert (await utils.remove_job("k")) == job
    with psycopg.connect(empty_db_url) as connection:
        assert connection.execute('select count(*) from "Jobs$Q".migrations').fetchone() == (20,)


# --- addJob / addJobs --------------------------------------------------------------------------


async def test_add_job_inserts_one_committed_row(
    utils: WorkerUtils, db: psycopg.Connection
) -> None:
    job = await utils.add_job(Job3(a=1))
    assert rows(db, "select id, task_identifier from graphile_worker.jobs") == [(job.id, "job3")]
    payload = rows(db, "select payload::text from graphile_worker._private_jobs")
    assert payload == [('{"a":1}',)]


async def test_add_job_supports_the_job_key_api(utils: WorkerUtils, db: psycopg.Connection) -> None:
    for a in range(1, 5):
        job = await utils.add_job(Job3(a=a), JobSpec(job_key="UNIQUE"))
    assert (job.payload, job.revision) == ({"a": 4}, 3)
    assert rows(db, "select count(*) from graphile_worker.jobs") == [(1,)]


async def test_add_job_supports_job_key_modes(utils: WorkerUtils) -> None:
    run_at1 = datetime(2200, 1, 1, tzinfo=UTC)
    run_at4 = datetime(2201, 1, 1, tzinfo=UTC)
    first = await utils.add_job(Job3(a=1), JobSpec(job_key="UNIQUE", run_at=run_at1))
    assert (first.revision, first.run_at) == (0, run_at1)
    preserved = await utils.add_job(
        Job3(a=2),
        JobSpec(job_key="UNIQUE", run_at=run_at4, job_key_mode=JobKeyMode.PRESERVE_RUN_AT),
    )
    assert (preserved.revision, preserved.payload, preserved.run_at) == (1, {"a": 2}, run_at1)
    deduped = await utils.add_job(
        Job3(a=3),
        JobSpec(job_key="UNIQUE", run_at=run_at4, job_key_mode=JobKeyMode.UNSAFE_DEDUPE),
    )
    assert (deduped.revision, deduped.payload, deduped.run_at) == (2, {"a": 2}, run_at1)
    replaced = await utils.add_job(
        Job3(a=4), JobSpec(job_key="UNIQUE", run_at=run_at4, job_key_mode=JobKeyMode.REPLACE)
    )
    assert (replaced.revision, replaced.payload, replaced.run_at) == (3, {"a": 4}, run_at4)
    assert len({first.id, preserved.id, deduped.id, replaced.id}) == 1


async def test_add_jobs_inserts_rows(utils: WorkerUtils, db: psycopg.Connection) -> None:
    (job,) = await utils.add_jobs([(Job3(a=1), None)])
    assert job.payload == {"a": 1}
    assert rows(db, "select count(*) from graphile_worker.jobs") == [(1,)]


async def test_add_jobs_supports_the_job_key_api(
    utils: WorkerUtils, db: psycopg.Connection
) -> None:
    for a in range(1, 5):
        (job,) = await utils.add_raw_jobs([RawJobSpec("job3", {"a": a}, JobSpec(job_key="UNIQUE"))])
    assert (job.payload, job.revision) == ({"a": 4}, 3)
    assert rows(db, "select count(*) from graphile_worker.jobs") == [(1,)]


async def test_add_jobs_supports_preserve_run_at(utils: WorkerUtils) -> None:
    run_at1 = datetime(2200, 1, 1, tzinfo=UTC)
    run_at4 = datetime(2201, 1, 1, tzinfo=UTC)
    (first,) = await utils.add_jobs([(Job3(a=1), JobSpec(job_key="UNIQUE", run_at=run_at1))])
    (kept,) = await utils.add_jobs(
        [
            (
                Job3(a=2),
                JobSpec(job_key="UNIQUE", run_at=run_at4, job_key_mode=JobKeyMode.PRESERVE_RUN_AT),
            )
        ]
    )
    (moved,) = await utils.add_jobs([(Job3(a=3), JobSpec(job_key="UNIQUE", run_at=run_at4))])
    assert (kept.revision, kept.run_at) == (1, run_at1)
    assert (moved.revision, moved.run_at) == (2, run_at4)
    assert first.id == kept.id == moved.id


async def test_add_jobs_adding_lots_of_jobs_works(utils: WorkerUtils) -> None:
    jobs = await utils.add_jobs([(Job3(a=a), None) for a in range(1, 7)])
    assert [job.payload["a"] for job in jobs] == [1, 2, 3, 4, 5, 6]


async def test_add_batch_job_and_remove_job(utils: WorkerUtils, db: psycopg.Connection) -> None:
    job = await utils.add_batch_job([Item(a=1), Item(a=2)], JobSpec(job_key="batch"))
    again = await utils.add_batch_job([Item(a=3)], JobSpec(job_key="batch"))
    assert again.id == job.id
    assert again.payload == [{"a": 1}, {"a": 2}, {"a": 3}]
    removed = await utils.remove_job("batch")
    assert removed is not None
    assert removed.id == job.id
    assert await utils.remove_job("batch") is None
    assert rows(db, "select count(*) from graphile_worker.jobs") == [(0,)]


async def test_worker_utils_is_the_context_adder(
    utils: WorkerUtils, db: psycopg.Connection
) -> None:
    adder: JobAdder = utils
    parent = await utils.add_raw_job("parent")
    ctx = WorkerContext(
        job=parent,
        worker_id="pool-test",
        extensions={},
        logger=logging.LoggerAdapter(logging.getLogger("test")),
        abort_signal=asyncio.Event(),
        adder=adder,
    )
    child = await ctx.add_job(Job3(a=9), JobSpec(queue_name="follow-up"))
    children = await ctx.add_raw_jobs([RawJobSpec("raw_child")])
    batch = await ctx.add_batch_job([Item(a=1)])
    assert (child.task_identifier, child.queue_name) == ("job3", "follow-up")
    assert [c.task_identifier for c in children] == ["raw_child"]
    assert batch.payload == [{"a": 1}]
    assert rows(db, "select count(*) from graphile_worker.jobs") == [(4,)]  # all committed


# --- completeJobs / permanentlyFailJobs / rescheduleJobs ------------------------------------


async def five_job_fixture(
    utils: WorkerUtils, db: psycopg.Connection
) -> tuple[Job, Job, Job, Job, Job]:
    """Node's fixture: five future jobs, one permanently failed and one locked by 'test'."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    jobs = await utils.add_jobs([(Job3(a=a), JobSpec(run_at=tomorrow)) for a in range(1, 6)])
    failed, regular1, locked, regular2, untouched = jobs
    await utils.permanently_fail_jobs([failed.id], "Failed forever")
    db.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'test'"
        " where id = %s",
        [locked.id],
    )
    return failed, regular1, locked, regular2, untouched


async def test_complete_jobs_completes_the_jobs_and_leaves_others_unaffected(
    utils: WorkerUtils, db: psycopg.Connection
) -> None:
    failed, regular1, locked, regular2, untouched = await five_job_fixture(utils, db)
    completed = await utils.complete_jobs([failed.id, regular1.id, locked.id, regular2.id])
    # By id, which need not follow the order the jobs were added in.
    assert [job.id for job in completed] == sorted([failed.id, regular1.id, regular2.id])
    assert [job.task_identifier for job in completed] == ["job3"] * 3
    remaining = all_jobs(db)
    assert {r[0]: r[7] for r in remaining} == {locked.id: "test", untouched.id: None}


async def test_permanently_fail_jobs(utils: WorkerUtils, db: psycopg.Connection) -> None:
    failed, regular1, locked, regular2, untouched = await five_job_fixture(utils, db)
    before = {r[0]: r for r in all_jobs(db)}
    updated = await utils.permanently_fail_jobs(
        [failed.id, regular1.id, locked.id, regular2.id], "TESTING!"
    )
    # By id, which need not follow the order the jobs were added in.
    assert [job.id for job in updated] == sorted([failed.id, regular1.id, regular2.id])
    for job in updated:
        assert job.last_error == "TESTING!"
        assert job.attempts == job.max_attempts > 0
        assert job.is_permanently_failed
    after = {r[0]: r for r in all_jobs(db)}
    assert after[locked.id] == before[locked.id]
    assert after[untouched.id] == before[untouched.id]


async def test_permanently_fail_jobs_default_reason(utils: WorkerUtils) -> None:
    job = await utils.add_raw_job("t")
    (failed,) = await utils.permanently_fail_jobs([job.id])
    assert failed.last_error == "Manually marked as failed"


async def test_reschedule_jobs(utils: WorkerUtils, db: psycopg.Connection) -> None:
    failed, regular1, locked, regular2, untouched = await five_job_fixture(utils, db)
    before = {r[0]: r for r in all_jobs(db)}
    soon = datetime.now(UTC) + timedelta(seconds=60)
    updated = await utils.reschedule_jobs(
        [failed.id, regular1.id, locked.id, regular2.id], run_at=soon, attempts=1
    )
    # By id, which need not follow the order the jobs were added in.
    assert [job.id for job in updated] == sorted([failed.id, regular1.id, regular2.id])
    errors = {job.id: job.last_error for job in updated}
    assert errors == {failed.id: "Failed forever", regular1.id: None, regular2.id: None}
    assert all(job.attempts == 1 and job.run_at == soon for job in updated)
    after = {r[0]: r for r in all_jobs(db)}
    assert after[locked.id] == before[locked.id]
    assert after[untouched.id] == before[untouched.id]


async def test_reschedule_jobs_treats_zero_as_a_value_and_none_as_not_given(
    utils: WorkerUtils,
) -> None:
    job = await utils.add_raw_job("t", None, JobSpec(priority=5, max_attempts=4))
    await utils.reschedule_jobs([job.id], attempts=3)
    (revived,) = await utils.reschedule_jobs([job.id], priority=0, attempts=0)
    assert (revived.priority, revived.attempts, revived.max_attempts) == (0, 0, 4)
    assert revived.run_at == job.run_at
    (more,) = await utils.reschedule_jobs([job.id], max_attempts=10)
    assert (more.priority, more.attempts, more.max_attempts) == (0, 0, 10)


async def test_admin_methods_treat_locks_older_than_four_hours_as_released(
    utils: WorkerUtils, db: psycopg.Connection
) -> None:
    job = await utils.add_raw_job("t")
    db.execute(
        "update graphile_worker._private_jobs set locked_at = now() - interval '4 hours 1 minute',"
        " locked_by = 'pool-dead' where id = %s",
        [job.id],
    )
    assert [j.id for j in await utils.complete_jobs([job.id])] == [job.id]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ids": ["1"]}, "ints"),
        ({"ids": [True]}, "ints"),
        ({"ids": 5}, "list"),
        ({"ids": [2**63]}, "bigint"),
        ({"ids": [1], "run_at": datetime(2030, 1, 1)}, "timezone-aware"),
        ({"ids": [1], "run_at": "2030-01-01"}, "datetime"),
        ({"ids": [1], "priority": 40000}, "priority"),
        ({"ids": [1], "attempts": -1}, "attempts"),
        ({"ids": [1], "max_attempts": 0}, "max_attempts"),
        ({"ids": [1], "max_attempts": 1.5}, "max_attempts"),
    ],
)
async def test_reschedule_jobs_validates_before_sql(
    utils: WorkerUtils, kwargs: dict[str, Any], match: str
) -> None:
    options = dict(kwargs)  # the parameter is shared by every schema flavour's run
    ids = options.pop("ids")
    with pytest.raises(InvalidJobSpecError, match=match):
        await utils.reschedule_jobs(ids, **options)


async def test_admin_methods_validate_before_sql(utils: WorkerUtils) -> None:
    with pytest.raises(InvalidJobSpecError, match="ints"):
        await utils.complete_jobs([1, "2"])  # type: ignore[list-item]
    with pytest.raises(InvalidJobSpecError, match="NUL"):
        await utils.permanently_fail_jobs([1], "bad\x00reason")
    with pytest.raises(InvalidJobSpecError, match="reason"):
        await utils.permanently_fail_jobs([1], 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidJobSpecError, match="single value"):
        await utils.force_unlock_workers("pool-1")
    with pytest.raises(InvalidJobSpecError, match="str"):
        await utils.force_unlock_workers([1])  # type: ignore[list-item]


# --- forceUnlockWorkers -------------------------------------------------------------------------


async def test_force_unlock_workers_unlocks_only_the_given_workers(
    utils: WorkerUtils, db: psycopg.Connection
) -> None:
    owners = ["pool-1", "pool-2", "pool-3", None]
    specs = [
        RawJobSpec("job3", {"a": n}, JobSpec(queue_name=("test", "test2", "test3")[n]))
        for n in range(3)
    ]
    specs += [RawJobSpec("job3", {"a": n}) for n in range(3, 10)]
    jobs = await utils.add_raw_jobs(specs)
    lock_of: dict[int, str | None] = {}
    for n, job in enumerate(jobs):
        owner = owners[n % 4]
        lock_of[job.id] = owner
        if owner is not None:
            db.execute(
                "update graphile_worker._private_jobs set locked_at = now(), locked_by = %s"
                " where id = %s",
                [owner, job.id],
            )
    for n, queue in enumerate(("test", "test2", "test3")):
        db.execute(
            "update graphile_worker._private_job_queues set locked_at = now(), locked_by = %s"
            " where queue_name = %s",
            [owners[n], queue],
        )
    await utils.force_unlock_workers(["pool-2", "pool-3"])
    after = dict(rows(db, "select id, locked_by from graphile_worker._private_jobs"))
    for job_id, owner in lock_of.items():
        assert after[job_id] == ("pool-1" if owner == "pool-1" else None)
    locked_queues = rows(
        db,
        "select queue_name, locked_by from graphile_worker._private_job_queues"
        " where locked_at is not null",
    )
    assert locked_queues == [("test", "pool-1")]


# --- cleanup ----------------------------------------------------------------------------------


async def test_cleanup_delete_permafailed_jobs(utils: WorkerUtils, db: psycopg.Connection) -> None:
    jobs = await utils.add_raw_jobs([RawJobSpec("job3", {"a": a}) for a in range(6)])
    doomed = [jobs[1].id, jobs[3].id, jobs[4].id]
    await utils.permanently_fail_jobs(doomed)
    assert await utils.cleanup(["DELETE_PERMAFAILED_JOBS"]) == {"DELETE_PERMAFAILED_JOBS": 3}
    remaining = [r[0] for r in all_jobs(db)]
    assert remaining == [j.id for j in jobs if j.id not in doomed]


async def test_cleanup_gc_job_queues(utils: WorkerUtils, db: psycopg.Connection) -> None:
    jobs = await utils.add_raw_jobs(
        [RawJobSpec("job3", {}, JobSpec(queue_name=q)) for q in ("test", "test2", "test3")]
    )
    for job, owner in zip(jobs, ("pool-1", "pool-2", "pool-3"), strict=True):
        db.execute(
            "update graphile_worker._private_jobs set locked_at = now(), locked_by = %s"
            " where id = %s",
            [owner, job.id],
        )
        db.execute(
            "update graphile_worker._private_job_queues set locked_at = now(), locked_by = %s"
            " where queue_name = %s",
            [owner, job.queue_name],
        )
    await utils.force_unlock_workers(["pool-3"])
    assert [j.id for j in await utils.complete_jobs([jobs[2].id])] == [jobs[2].id]
    assert await utils.cleanup() == {"GC_JOB_QUEUES": 1}  # the default task
    queues = rows(db, "select queue_name from graphile_worker._private_job_queues order by 1")
    assert queues == [("test",), ("test2",)]


async def test_cleanup_gc_task_identifiers(utils: WorkerUtils, db: psycopg.Connection) -> None:
    kept_job = await utils.add_raw_job("has_job")
    for identifier in ("no_job_1", "no_job_2", "keep_me"):
        job = await utils.add_raw_job(identifier)
        await utils.complete_jobs([job.id])
    counts = await utils.cleanup(["GC_TASK_IDENTIFIERS"], task_identifiers_to_keep=["keep_me"])
    assert counts == {"GC_TASK_IDENTIFIERS": 2}
    identifiers = rows(db, "select identifier from graphile_worker._private_tasks order by 1")
    assert identifiers == [("has_job",), ("keep_me",)]
    assert kept_job.task_identifier == "has_job"


async def test_cleanup_runs_in_a_fixed_order(utils: WorkerUtils, db: psycopg.Connection) -> None:
    job = await utils.add_raw_job("only", None, JobSpec(queue_name="only_queue"))
    await utils.permanently_fail_jobs([job.id])
    counts = await utils.cleanup(
        ["GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS", "DELETE_PERMAFAILED_JOBS"]
    )
    # Deleting the dead job first frees its task and its queue for the two collectors.
    assert list(counts.items()) == [
        ("DELETE_PERMAFAILED_JOBS", 1),
        ("GC_TASK_IDENTIFIERS", 1),
        ("GC_JOB_QUEUES", 1),
    ]
    assert rows(db, "select count(*) from graphile_worker._private_tasks") == [(0,)]


async def test_cleanup_refuses_unknown_names(utils: WorkerUtils) -> None:
    with pytest.raises(ConfigurationError, match="DELETE_PERMAFAILED_JOBS, GC_TASK_IDENTIFIERS"):
        await utils.cleanup(["GC_JOB_QUEUES", "VACUUM"])
    with pytest.raises(ConfigurationError, match="list of names"):
        await utils.cleanup("GC_JOB_QUEUES")
    with pytest.raises(InvalidJobSpecError, match="task_identifiers_to_keep"):
        await utils.cleanup(["GC_TASK_IDENTIFIERS"], task_identifiers_to_keep="x")
