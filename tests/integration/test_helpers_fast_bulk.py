"""The fast bulk adds on every driver and schema flavour: ``add_jobs(..., return_jobs=False)``
/ ``add_raw_jobs(..., return_jobs=False)`` (ids, no ``Job`` objects) and ``copy_jobs`` /
``copy_raw_jobs`` (``COPY``), which must write exactly the rows ``add_jobs`` writes."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError

from sqlalchemy_graphile import (
    InvalidJobSpecError,
    InvalidTaskError,
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    Task,
    WorkerUtils,
)
from sqlalchemy_graphile.context import WorkerContext

from ._enqueue_drivers import Driver, listening

pytestmark = pytest.mark.schema_flavours


class Ping(Task):
    IDENTIFIER: ClassVar[str] = "ping"
    n: int

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Pong(Task):
    IDENTIFIER: ClassVar[str] = "pong"

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Rollback(Exception):
    """Raised to roll a savepoint back."""


LATER = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)

# Every value a spec can set, the defaults, names new and old, and text that COPY's format
# must escape (backslash, tab, newline, carriage return) or that is not ASCII.
SPECS = [
    RawJobSpec("plain"),
    RawJobSpec("plain", {"n": 1}),
    RawJobSpec("tab\there", {"text": "back\\slash\ttab\nnewline\rreturn"}),
    RawJobSpec("queued", [1, "two", None], JobSpec(queue_name="q\\1\n")),
    RawJobSpec("queued", {"é": "日本"}, JobSpec(queue_name="known")),
    RawJobSpec("timed", {}, JobSpec(run_at=LATER, priority=-7, max_attempts=1)),
    RawJobSpec("flagged", 3, JobSpec(flags=("a", "b\tc", "a"))),
    RawJobSpec("flagged", "no flags", JobSpec(flags=())),
    RawJobSpec("timed", None, JobSpec(run_at=LATER.astimezone(UTC) - timedelta(days=400))),
]

ROW = """
select job_queue_id, task_id, payload::text, priority, run_at, attempts, max_attempts,
       last_error, created_at, updated_at, key, locked_at, locked_by, revision, flags::text,
       is_available
  from graphile_worker._private_jobs where id = %s
"""


def rows(db: psycopg.Connection, ids: list[int]) -> list[tuple[Any, ...]]:
    return [db.execute(ROW, [job_id]).fetchone() or () for job_id in ids]


async def test_copy_writes_the_rows_add_jobs_writes(driver: Driver, db: psycopg.Connection) -> None:
    async with driver.transaction() as tx:
        await tx.add_raw_job("known", None, JobSpec(queue_name="known"))
        await tx.commit()
    async with driver.transaction() as tx:
        copied = await tx.call("copy_raw_jobs", SPECS)
        added = await tx.add_raw_jobs(SPECS)
        await tx.commit()
    # One transaction: the same now() for run_at, created_at and updated_at.
    assert rows(db, copied) == rows(db, [job.id for job in added])
    assert len(set(copied)) == len(SPECS)
    assert not set(copied) & {job.id for job in added}
    payloads = [row[2] for row in rows(db, copied)]
    assert payloads == [job.payload_json for job in added]


async def test_copy_ids_follow_the_input_order(driver: Driver, db: psycopg.Connection) -> None:
    order = list(range(50))
    random.Random(7).shuffle(order)
    async with driver.transaction() as tx:
        ids = await tx.call("copy_jobs", [(Ping(n=n), None) for n in order])
        await tx.commit()
    stored: dict[int, str] = dict(
        db.execute("select id, payload->>'n' from graphile_worker._private_jobs")
    )
    assert [int(stored[job_id]) for job_id in ids] == order


async def test_copy_and_add_jobs_of_one_call_share_new_names(
    driver: Driver, db: psycopg.Connection
) -> None:
    async with driver.transaction() as tx:
        await tx.call("copy_raw_jobs", [RawJobSpec("new", {}, JobSpec(queue_name="nq"))] * 3)
        await tx.add_raw_job("new", {}, JobSpec(queue_name="nq"))
        await tx.commit()
    names = db.execute(
        "select count(distinct task_id), count(distinct job_queue_id), count(*) "
        "from graphile_worker._private_jobs"
    ).fetchone()
    assert names == (1, 1, 4)
    assert db.execute("select count(*) from graphile_worker._private_tasks").fetchone() == (1,)


async def test_ids_are_those_of_the_jobs_add_jobs_returns(
    driver: Driver, db: psycopg.Connection
) -> None:
    async with driver.transaction() as tx:
        pending = await tx.add_raw_job("keyed", {"v": 0}, JobSpec(job_key="k1"))
        await tx.commit()
    specs = [
        RawJobSpec("a", {"i": 0}),
        RawJobSpec("keyed", {"v": 1}, JobSpec(job_key="k1")),  # updates the pending job
        RawJobSpec("a", {"i": 0}),
        RawJobSpec("keyed", {"v": 2}, JobSpec(job_key="k2")),  # a new job
        RawJobSpec("b", {"i": 1}, JobSpec(queue_name="q")),
    ]
    async with driver.transaction() as tx:
        ids = await tx.call("add_raw_jobs", specs, return_jobs=False)
        await tx.commit()
    assert ids[1] == pending.id
    stored = {
        row[0]: row[1:]
        for row in db.execute(
            "select jobs.id, jobs.task_identifier, private.payload::text, jobs.key "
            "from graphile_worker.jobs join graphile_worker._private_jobs as private "
            "using (id)"
        )
    }
    assert [stored[job_id] for job_id in ids] == [
        ("a", '{"i":0}', None),
        ("keyed", '{"v":1}', "k1"),
        ("a", '{"i":0}', None),
        ("keyed", '{"v":2}', "k2"),
        ("b", '{"i":1}', None),
    ]
    assert len(set(ids)) == len(ids)


async def test_typed_add_jobs_returns_ids_in_order(driver: Driver, db: psycopg.Connection) -> None:
    async with driver.transaction() as tx:
        ids = await tx.call("add_jobs", [(Ping(n=n), None) for n in (5, 3, 5)], return_jobs=False)
        await tx.commit()
    stored: dict[int, str] = dict(
        db.execute("select id, payload::text from graphile_worker._private_jobs")
    )
    assert [stored[job_id] for job_id in ids] == ['{"n":5}', '{"n":3}', '{"n":5}']
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("method", "jobs", "error"),
    [
        (
            "copy_raw_jobs",
            [RawJobSpec("t"), RawJobSpec("t", None, JobSpec(job_key="k"))],
            InvalidJobSpecError,
        ),
        (
            "copy_raw_jobs",
            [RawJobSpec("t", None, JobSpec(job_key_mode=JobKeyMode.UNSAFE_DEDUPE))],
            InvalidJobSpecError,
        ),
        ("copy_raw_jobs", ["t"], InvalidJobSpecError),
        ("copy_jobs", [(Ping(n=1), None), (Pong(), None)], InvalidTaskError),
        ("copy_jobs", [(Ping(n=1), "spec")], InvalidJobSpecError),
    ],
)
async def test_copy_refuses_bad_input_before_any_sql(
    driver: Driver, method: str, jobs: list[Any], error: type[Exception]
) -> None:
    async with driver.transaction() as tx:
        before = len(driver.statements)
        with pytest.raises(error):
            await tx.call(method, jobs)
        assert len(driver.statements) == before
        # Nothing was sent, so the transaction carries on.
        assert await tx.call("copy_raw_jobs", [RawJobSpec("after")]) != []


async def test_ids_refuse_the_bulk_rules_before_any_sql(driver: Driver) -> None:
    keyed = [
        RawJobSpec("t", None, JobSpec(job_key="k")),
        RawJobSpec("u", None, JobSpec(job_key="k")),
    ]
    async with driver.transaction() as tx:
        before = len(driver.statements)
        with pytest.raises(InvalidJobSpecError, match="more than once"):
            await tx.call("add_raw_jobs", keyed, return_jobs=False)
        with pytest.raises(InvalidTaskError):
            await tx.call("add_jobs", [(Ping(n=1), None), (Pong(), None)], return_jobs=False)
        with pytest.raises(InvalidJobSpecError, match="return_jobs must be True or False"):
            await tx.call("add_raw_jobs", [RawJobSpec("t")], return_jobs="no")
        assert len(driver.statements) == before


async def test_empty_lists_send_nothing(driver: Driver) -> None:
    async with driver.transaction() as tx:
        before = len(driver.statements)
        assert await tx.call("copy_raw_jobs", []) == []
        assert await tx.call("add_raw_jobs", [], return_jobs=False) == []
        assert len(driver.statements) == before


async def test_copy_rolls_back_with_the_transaction_and_notifies_no_one(
    driver: Driver, db: psycopg.Connection, db_url: str
) -> None:
    with listening(db_url) as listener:
        async with driver.transaction() as tx:
            await tx.call("copy_raw_jobs", [RawJobSpec("gone", {}, JobSpec(queue_name="gq"))] * 4)
            await tx.rollback()
        async with driver.transaction() as control:
            await control.add_raw_jobs([RawJobSpec("c")] * 3)
            await control.commit()
        assert listener.until_count(3) == []
    assert db.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (3,)
    assert db.execute(
        "select count(*) from graphile_worker._private_tasks where identifier = 'gone'"
    ).fetchone() == (0,)
    assert db.execute("select count(*) from graphile_worker._private_job_queues").fetchone() == (0,)


async def test_copy_is_invisible_until_commit_and_notifies_once(
    driver: Driver, db: psycopg.Connection, db_url: str
) -> None:
    with listening(db_url) as listener:
        async with driver.transaction() as tx:
            await tx.call("copy_raw_jobs", [RawJobSpec("seen", {"i": i}) for i in range(7)])
            assert db.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (
                0,
            )
            await tx.commit()
        assert listener.until_count(7) == []
        async with driver.transaction() as control:
            await control.add_raw_jobs([RawJobSpec("c")] * 2)
            await control.commit()
        # Nothing arrived between the copy's notification and the control's.
        assert listener.until_count(2) == []
    assert db.execute("select count(*) from graphile_worker._private_jobs").fetchone() == (9,)


async def test_copied_jobs_in_a_rolled_back_savepoint_disappear(
    driver: Driver, db: psycopg.Connection
) -> None:
    async with driver.transaction() as tx:
        with contextlib.suppress(Rollback):
            async with tx.savepoint():
                await tx.call("copy_raw_jobs", [RawJobSpec("inner")])
                raise Rollback
        await tx.call("copy_raw_jobs", [RawJobSpec("outer")])
        await tx.commit()
    assert db.execute("select task_identifier from graphile_worker.jobs").fetchall() == [("outer",)]


async def test_worker_utils_copy_and_ids_commit(db_url: str, db: psycopg.Connection) -> None:
    async with WorkerUtils(db_url) as utils:
        copied = await utils.copy_jobs([(Ping(n=1), None), (Ping(n=2), JobSpec(priority=3))])
        raw = await utils.copy_raw_jobs([RawJobSpec("r", {"x": 1})])
        ids = await utils.add_jobs([(Ping(n=3), None)], return_jobs=False)
        raw_ids = await utils.add_raw_jobs([RawJobSpec("r", {"x": 2})], return_jobs=False)
        jobs = await utils.add_raw_jobs([RawJobSpec("r", {"x": 3})])
    stored: dict[int, str] = dict(
        db.execute("select id, payload::text from graphile_worker._private_jobs")
    )
    assert [stored[job_id] for job_id in copied + raw + ids + raw_ids] == [
        '{"n":1}',
        '{"n":2}',
        '{"x":1}',
        '{"n":3}',
        '{"x":2}',
    ]
    assert stored[jobs[0].id] == '{"x":3}'


async def test_a_failed_copy_is_a_sqlalchemy_error_and_the_transaction_is_the_callers(
    driver: Driver, db: psycopg.Connection
) -> None:
    db.execute(
        "alter table graphile_worker._private_jobs "
        "add constraint low_priority_only check (priority < 100)"
    )
    async with driver.transaction() as tx:
        with pytest.raises(DBAPIError) as raised:
            await tx.call("copy_raw_jobs", [RawJobSpec("t", None, JobSpec(priority=200))])
        orig = raised.value.orig
        sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        assert sqlstate == "23514"  # check_violation
        assert "low_priority_only" in str(orig)
        await tx.rollback()
    assert db.execute("select count(*) from graphile_worker._private_tasks").fetchone() == (0,)
