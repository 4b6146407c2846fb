"""JobHelpers / AsyncJobHelpers in the caller's transaction, on every driver."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sqlalchemy_graphile import (
    AsyncJobHelpers,
    BatchTask,
    InvalidIdentifierError,
    InvalidJobSpecError,
    InvalidPayloadError,
    InvalidTaskError,
    JobHelpers,
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    Task,
)
from sqlalchemy_graphile.context import WorkerContext

from ._enqueue_drivers import Driver, listening

pytestmark = pytest.mark.schema_flavours


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str
    subject: str = "Welcome"

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Resize(Task):
    IDENTIFIER: ClassVar[str] = "resize"
    width: int

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Notify(BatchTask):
    IDENTIFIER: ClassVar[str] = "notify"
    user_id: str

    @classmethod
    async def run_batch(cls, items: list[Notify], ctx: WorkerContext) -> None:
        return None


class Digest(BatchTask):
    IDENTIFIER: ClassVar[str] = "digest"
    n: int

    @classmethod
    async def run_batch(cls, items: list[Digest], ctx: WorkerContext) -> None:
        return None


@pytest.fixture
def users(db: psycopg.Connection) -> None:
    db.execute("create table users (id serial primary key, email text not null)")


def count(db: psycopg.Connection, sql: str) -> int:
    row = db.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


JOBS = "select count(*) from graphile_worker._private_jobs"
USERS = "select count(*) from users"


# --- transactions ------------------------------------------------------------------------


@pytest.mark.usefixtures("users")
async def test_commit_makes_job_and_business_row_visible_together(
    driver: Driver, db: psycopg.Connection
) -> None:
    async with driver.transaction() as tx:
        await tx.scalar("insert into users (email) values ('a@example.com') returning id")
        job = await tx.add_job(SendEmail(to="a@example.com"), JobSpec(queue_name="mail"))
        assert (count(db, JOBS), count(db, USERS)) == (0, 0)  # invisible before commit
        await tx.commit()
    assert (count(db, JOBS), count(db, USERS)) == (1, 1)
    assert job.task_identifier == "send_email"
    assert job.queue_name == "mail"
    assert job.payload == {"to": "a@example.com", "subject": "Welcome"}
    row = db.execute("select id, task_identifier, queue_name from graphile_worker.jobs").fetchone()
    assert row == (job.id, "send_email", "mail")


@pytest.mark.usefixtures("users")
async def test_rollback_leaves_nothing_and_sends_no_notification(
    driver: Driver, db: psycopg.Connection, db_url: str
) -> None:
    with listening(db_url) as listener:
        async with driver.transaction() as tx:
            await tx.scalar("insert into users (email) values ('a@example.com') returning id")
            await tx.add_job(SendEmail(to="a@example.com"))
            await tx.add_raw_jobs([RawJobSpec("x"), RawJobSpec("y")])
            await tx.rollback()
        async with driver.transaction() as control:
            await control.add_raw_jobs([RawJobSpec("c1"), RawJobSpec("c2"), RawJobSpec("c3")])
            await control.commit()
        assert listener.until_count(3) == []
    assert count(db, USERS) == 0
    assert count(db, JOBS) == 3  # the control's jobs only
    assert (
        count(
            db,
            "select count(*) from graphile_worker._private_tasks"
            " where identifier in ('send_email', 'x', 'y')",
        )
        == 0
    )


class Undo(Exception):
    """Raised to roll a savepoint back."""


async def test_rolled_back_savepoint_leaves_no_job_and_no_notification(
    driver: Driver, db: psycopg.Connection, db_url: str
) -> None:
    with listening(db_url) as listener:
        async with driver.transaction() as tx:
            with contextlib.suppress(Undo):
                async with tx.savepoint():
                    await tx.add_job(SendEmail(to="a@example.com"), JobSpec(job_key="A"))
                    raise Undo
            await tx.add_job(SendEmail(to="b@example.com"), JobSpec(job_key="B"))
            await tx.commit()
        async with driver.transaction() as control:
            await control.add_raw_jobs([RawJobSpec("c1"), RawJobSpec("c2"), RawJobSpec("c3")])
            await control.commit()
        assert listener.until_count(3) == [1]  # B's notification only
    keys = db.execute("select key from graphile_worker._private_jobs where key is not null")
    assert [r[0] for r in keys] == ["B"]


async def test_notification_is_delivered_at_commit_not_before(driver: Driver, db_url: str) -> None:
    with listening(db_url) as listener:
        async with driver.transaction() as tx:
            await tx.add_raw_job("first")
            async with driver.transaction() as control:
                await control.add_raw_jobs([RawJobSpec("c1"), RawJobSpec("c2"), RawJobSpec("c3")])
                await control.commit()
            assert listener.until_count(3) == []  # the open transaction sent nothing yet
            await tx.commit()
        assert listener.until_count(1) == []


async def test_helpers_never_commit(driver: Driver, db: psycopg.Connection) -> None:
    async with driver.transaction() as tx:
        await tx.add_job(SendEmail(to="a@example.com"))
        await tx.add_jobs([(SendEmail(to="b@example.com"), None)])
        await tx.add_raw_job("raw")
        await tx.add_raw_jobs([RawJobSpec("raw")])
        await tx.add_batch_job([Notify(user_id="u")])
        await tx.remove_job("missing")
        assert count(db, JOBS) == 0
    # leaving the session without commit rolls everything back
    assert count(db, JOBS) == 0


# --- what add_job stores and returns --------------------------------------------------------


async def test_add_job_defaults(driver: Driver) -> None:
    async with driver.transaction() as tx:
        job = await tx.add_job(SendEmail(to="a@example.com"))
        now = await tx.scalar("select now()")
    assert job.id > 0
    assert job.task_identifier == "send_email"
    assert job.queue_name is None
    assert job.payload_json == '{"to":"a@example.com","subject":"Welcome"}'
    assert (job.priority, job.attempts, job.max_attempts, job.revision) == (0, 0, 25, 0)
    assert (job.key, job.flags, job.last_error, job.locked_at, job.locked_by) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert job.run_at == now  # the transaction's now()
    assert job.created_at == job.updated_at == now


async def test_add_job_stores_every_spec_field(driver: Driver, db: psycopg.Connection) -> None:
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    spec = JobSpec(
        queue_name="mail",
        run_at=run_at,
        max_attempts=3,
        job_key="welcome:1",
        priority=-5,
        flags=("slow", "external"),
    )
    async with driver.transaction() as tx:
        job = await tx.add_job(SendEmail(to="a@example.com", subject="Hi"), spec)
        await tx.commit()
    assert (job.queue_name, job.run_at, job.max_attempts, job.key, job.priority) == (
        "mail",
        run_at,
        3,
        "welcome:1",
        -5,
    )
    assert job.flags == {"slow": True, "external": True}
    row = db.execute(
        "select queue_name, task_identifier, run_at, max_attempts, key, priority, flags"
        " from graphile_worker.jobs where id = %s",
        [job.id],
    ).fetchone()
    assert row == ("mail", "send_email", run_at, 3, "welcome:1", -5, job.flags)


async def test_run_at_in_another_time_zone_is_the_same_instant(driver: Driver) -> None:
    local = datetime(2031, 1, 1, 12, 0, tzinfo=UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    async with driver.transaction() as tx:
        single = await tx.add_raw_job("t", None, JobSpec(run_at=local))
        bulk = await tx.add_raw_jobs([RawJobSpec("t", None, JobSpec(run_at=local))])
    assert single.run_at == bulk[0].run_at == datetime(2031, 1, 1, 12, 0, tzinfo=UTC)


async def test_add_raw_job_payload_none_means_empty_object(driver: Driver) -> None:
    async with driver.transaction() as tx:
        job = await tx.add_raw_job("raw")
        listed = await tx.add_raw_jobs([RawJobSpec("raw")])
    assert job.payload_json == listed[0].payload_json == "{}"


async def test_add_raw_job_keeps_non_object_payloads(driver: Driver) -> None:
    async with driver.transaction() as tx:
        jobs = [await tx.add_raw_job("raw", value) for value in ([1, 2], "text", 3, True)]
    assert [job.payload for job in jobs] == [[1, 2], "text", 3, True]


# --- bulk adds ------------------------------------------------------------------------------


async def test_add_jobs_is_one_round_trip_in_input_order_with_per_job_specs(
    driver: Driver, schema_flavour: str
) -> None:
    later = datetime(2032, 1, 1, tzinfo=UTC)
    jobs = [
        (SendEmail(to="a@example.com"), JobSpec(queue_name="q1", priority=3)),
        (SendEmail(to="b@example.com"), None),
        (SendEmail(to="c@example.com"), JobSpec(job_key="k-c", run_at=later, max_attempts=2)),
        (SendEmail(to="d@example.com"), JobSpec(flags=("x",), queue_name="q2")),
    ]
    async with driver.transaction() as tx:
        # One round trip while at most one task and one queue are new: the names of several
        # new ones at once take one more (indexed) read to tell apart.
        await tx.add_raw_job("elsewhere", None, JobSpec(queue_name="q2"))
        before = len(driver.statements)
        added = await tx.add_jobs(jobs)
        assert len(driver.statements) - before == 1
    assert [job.payload["to"] for job in added] == [t.to for t, _ in jobs]
    assert [job.queue_name for job in added] == ["q1", None, None, "q2"]
    assert [job.priority for job in added] == [3, 0, 0, 0]
    assert [job.key for job in added] == [None, None, "k-c", None]
    assert added[2].run_at == later
    assert added[2].max_attempts == 2
    assert added[3].flags == {"x": True}
    assert {job.task_identifier for job in added} == {"send_email"}
    ids = [job.id for job in added]
    if schema_flavour == "ours":
        assert ids == sorted(ids)  # ours inserts in input order; Node's in its join's order
    assert len(set(ids)) == len(ids)


async def test_add_raw_jobs_mixes_identifiers_in_one_round_trip(driver: Driver) -> None:
    specs = [
        RawJobSpec("resize", {"width": 10}, JobSpec(queue_name="img")),
        RawJobSpec("send_email", {"to": "x"}),
        RawJobSpec("resize", [1, 2, 3], JobSpec(job_key="r")),
    ]
    async with driver.transaction() as tx:
        await tx.scalar("select 1")
        before = len(driver.statements)
        added = await tx.add_raw_jobs(specs)
        assert len(driver.statements) - before == 1
    assert [(j.task_identifier, j.queue_name, j.payload, j.key) for j in added] == [
        ("resize", "img", {"width": 10}, None),
        ("send_email", None, {"to": "x"}, None),
        ("resize", None, [1, 2, 3], "r"),
    ]


async def test_several_new_names_in_one_bulk_add_are_read_back_with_one_lookup(
    driver: Driver,
) -> None:
    names = [("t1", "q1"), ("t2", "q2"), ("t3", None), ("t1", "q2")]
    specs = [RawJobSpec(t, {"i": i}, JobSpec(queue_name=q)) for i, (t, q) in enumerate(names)]
    async with driver.transaction() as tx:
        await tx.scalar("select 1")
        before = len(driver.statements)
        added = await tx.add_raw_jobs(specs)
        assert len(driver.statements) - before == 3  # the add, then tasks and queues by id
    assert [(j.task_identifier, j.queue_name, j.payload) for j in added] == [
        (t, q, {"i": i}) for i, (t, q) in enumerate(names)
    ]


async def test_empty_bulk_adds_send_nothing(driver: Driver) -> None:
    async with driver.transaction() as tx:
        before = len(driver.statements)
        assert await tx.add_jobs([]) == []
        assert await tx.add_raw_jobs([]) == []
        assert len(driver.statements) == before


async def test_bulk_add_updates_existing_keys_and_preserves_run_at(driver: Driver) -> None:
    first_run_at = datetime(2033, 1, 1, tzinfo=UTC)
    second_run_at = datetime(2034, 1, 1, tzinfo=UTC)
    async with driver.transaction() as tx:
        (original,) = await tx.add_raw_jobs(
            [RawJobSpec("t", {"v": 1}, JobSpec(job_key="k", run_at=first_run_at))]
        )
        preserved, fresh = await tx.add_raw_jobs(
            [
                RawJobSpec(
                    "t",
                    {"v": 2},
                    JobSpec(
                        job_key="k",
                        run_at=second_run_at,
                        job_key_mode=JobKeyMode.PRESERVE_RUN_AT,
                    ),
                ),
                RawJobSpec("t", {"v": 3}),
            ]
        )
        (replaced,) = await tx.add_raw_jobs(
            [RawJobSpec("t", {"v": 4}, JobSpec(job_key="k", run_at=second_run_at))]
        )
    assert preserved.id == original.id == replaced.id
    assert (preserved.revision, preserved.payload, preserved.run_at) == (1, {"v": 2}, first_run_at)
    assert fresh.key is None
    assert (replaced.revision, replaced.payload, replaced.run_at) == (2, {"v": 4}, second_run_at)


@pytest.mark.parametrize(
    ("jobs", "error", "message"),
    [
        (
            [RawJobSpec("t", None, JobSpec(job_key="k", job_key_mode=JobKeyMode.UNSAFE_DEDUPE))],
            InvalidJobSpecError,
            "UNSAFE_DEDUPE",
        ),
        (
            [
                RawJobSpec("t", None, JobSpec(job_key="k")),
                RawJobSpec("u", None, JobSpec(job_key="k")),
            ],
            InvalidJobSpecError,
            "more than once",
        ),
        (
            [
                RawJobSpec("t", None, JobSpec(job_key="a", job_key_mode=JobKeyMode.REPLACE)),
                RawJobSpec(
                    "t", None, JobSpec(job_key="b", job_key_mode=JobKeyMode.PRESERVE_RUN_AT)
                ),
            ],
            InvalidJobSpecError,
            "share their job_key_mode",
        ),
    ],
)
async def test_bulk_add_refuses_what_the_database_cannot_do_before_sql(
    driver: Driver, jobs: list[RawJobSpec], error: type[Exception], message: str
) -> None:
    async with driver.transaction() as tx:
        await tx.scalar("select 1")
        before = len(driver.statements)
        with pytest.raises(error, match=message):
            await tx.add_raw_jobs(jobs)
        assert len(driver.statements) == before
        assert await tx.scalar("select 1") == 1  # the transaction is still usable


async def test_add_jobs_refuses_mixed_task_types(driver: Driver) -> None:
    async with driver.transaction() as tx:
        before = len(driver.statements)
        with pytest.raises(InvalidTaskError, match="one type"):
            await tx.add_jobs([(SendEmail(to="a"), None), (Resize(width=1), None)])
        with pytest.raises(InvalidTaskError, match="Task instance"):
            await tx.add_jobs([({"to": "a"}, None)])  # type: ignore[list-item]
        with pytest.raises(InvalidTaskError, match="pairs"):
            await tx.add_jobs([SendEmail(to="a")])  # type: ignore[list-item]
        assert len(driver.statements) == before


# --- batch jobs ------------------------------------------------------------------------------


async def test_add_batch_job_stores_a_json_array(driver: Driver) -> None:
    async with driver.transaction() as tx:
        job = await tx.add_batch_job([Notify(user_id="u1"), Notify(user_id="u2")])
    assert job.task_identifier == "notify"
    assert job.payload_json == '[{"user_id":"u1"},{"user_id":"u2"}]'


async def test_batch_items_accumulate_under_one_key(driver: Driver, db: psycopg.Connection) -> None:
    spec = JobSpec(job_key="notify:batch", job_key_mode=JobKeyMode.PRESERVE_RUN_AT)
    async with driver.transaction() as tx:
        first = await tx.add_batch_job([Notify(user_id="1")], spec)
        await tx.add_batch_job([Notify(user_id="2"), Notify(user_id="3")], spec)
        last = await tx.add_batch_job([Notify(user_id="4")], spec)
        await tx.commit()
    assert last.id == first.id
    assert last.run_at == first.run_at  # a fixed batching window
    assert (last.attempts, last.revision) == (0, 2)
    assert last.payload == [{"user_id": str(n)} for n in range(1, 5)]
    assert count(db, JOBS) == 1


async def test_add_batch_job_refuses_bad_items_before_sql(driver: Driver) -> None:
    async with driver.transaction() as tx:
        before = len(driver.statements)
        with pytest.raises(InvalidPayloadError, match="at least one item"):
            await tx.add_batch_job([])
        with pytest.raises(InvalidTaskError, match="one type"):
            await tx.add_batch_job([Notify(user_id="1"), Digest(n=1)])
        with pytest.raises(InvalidTaskError, match="BatchTask items"):
            await tx.add_batch_job([SendEmail(to="a")])  # type: ignore[list-item]
        with pytest.raises(InvalidTaskError, match="add_batch_job"):
            await tx.add_job(Notify(user_id="1"))  # type: ignore[arg-type]
        assert len(driver.statements) == before


# --- remove_job ------------------------------------------------------------------------------


async def test_remove_job(driver: Driver, db: psycopg.Connection) -> None:
    async with driver.transaction() as tx:
        added = await tx.add_job(SendEmail(to="a"), JobSpec(job_key="k", queue_name="q"))
        await tx.commit()
    async with driver.transaction() as tx:
        removed = await tx.remove_job("k")
        assert await tx.remove_job("k") is None
        assert await tx.remove_job("never-existed") is None
        await tx.commit()
    assert removed is not None
    assert (removed.id, removed.task_identifier, removed.queue_name) == (
        added.id,
        "send_email",
        "q",
    )
    assert count(db, JOBS) == 0


async def test_remove_job_on_a_locked_job_retires_it(
    driver: Driver, db: psycopg.Connection
) -> None:
    async with driver.transaction() as tx:
        added = await tx.add_job(SendEmail(to="a"), JobSpec(job_key="k"))
        await tx.commit()
    db.execute(
        "update graphile_worker._private_jobs set locked_at = now(), locked_by = 'w',"
        " attempts = 1 where id = %s",
        [added.id],
    )
    async with driver.transaction() as tx:
        removed = await tx.remove_job("k")
        await tx.commit()
    assert removed is not None
    assert (removed.id, removed.key, removed.attempts, removed.locked_by) == (
        added.id,
        None,
        25,
        "w",
    )
    assert count(db, JOBS) == 1


# --- job keys: every mode against every state of the existing job -------------------------

FUTURE = datetime(2040, 1, 1, tzinfo=UTC)
LATER = datetime(2041, 1, 1, tzinfo=UTC)

_STATES = {
    "pending": "",
    "retry": "attempts = 1, last_error = 'boom'",
    "failed": "attempts = max_attempts, last_error = 'dead'",
    "locked": "attempts = 1, locked_at = now(), locked_by = 'pool-x'",
}

# (state, mode) -> (same row updated?, run_at kept?, payload replaced?)
_EXPECTED = {
    ("pending", "replace"): ("update", False, True),
    ("pending", "preserve_run_at"): ("update", True, True),
    ("pending", "unsafe_dedupe"): ("dedupe", True, False),
    ("retry", "replace"): ("update", False, True),
    ("retry", "preserve_run_at"): ("update", False, True),
    ("retry", "unsafe_dedupe"): ("dedupe", True, False),
    ("failed", "replace"): ("new", False, True),
    ("failed", "preserve_run_at"): ("new", False, True),
    ("failed", "unsafe_dedupe"): ("dedupe", True, False),
    ("locked", "replace"): ("new", False, True),
    ("locked", "preserve_run_at"): ("new", False, True),
    ("locked", "unsafe_dedupe"): ("dedupe", True, False),
}


@pytest.mark.parametrize("mode", [m.value for m in JobKeyMode])
async def test_job_key_on_a_free_key_inserts(driver: Driver, mode: str) -> None:
    async with driver.transaction() as tx:
        job = await tx.add_raw_job(
            "t", {"v": 1}, JobSpec(job_key="k", job_key_mode=JobKeyMode(mode))
        )
    assert (job.key, job.revision, job.payload) == ("k", 0, {"v": 1})


# The outcome is decided by SQL; one async and one sync driver are enough here.
@pytest.fixture(params=["asyncpg", "psycopg2"])
async def two_drivers(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Driver]:
    made = Driver(request.param, db_url)
    yield made
    await made.dispose()


@pytest.mark.parametrize(("state", "mode"), list(_EXPECTED))
async def test_job_key_modes(
    two_drivers: Driver, db: psycopg.Connection, state: str, mode: str
) -> None:
    driver = two_drivers
    async with driver.transaction() as tx:
        old = await tx.add_raw_job(
            "old_task", {"v": 1}, JobSpec(job_key="k", queue_name="q1", run_at=FUTURE)
        )
        await tx.commit()
    if _STATES[state]:
        db.execute(
            f"update graphile_worker._private_jobs set {_STATES[state]} where id = %s", [old.id]
        )
    async with driver.transaction() as tx:
        new = await tx.add_raw_job(
            "new_task", {"v": 2}, JobSpec(job_key="k", run_at=LATER, job_key_mode=JobKeyMode(mode))
        )
        await tx.commit()
    outcome, run_at_kept, payload_replaced = _EXPECTED[(state, mode)]
    old_row = db.execute(
        "select key, attempts, max_attempts from graphile_worker._private_jobs where id = %s",
        [old.id],
    ).fetchone()
    assert old_row is not None
    if outcome == "new":
        assert new.id != old.id
        assert (new.key, new.revision, new.attempts) == ("k", 0, 0)
        assert old_row == (None, 25, 25)  # retired: no key, never retried
    else:
        assert new.id == old.id
        assert new.revision == 1
    if outcome == "update":
        assert (new.task_identifier, new.queue_name) == ("new_task", None)
        assert (new.attempts, new.last_error) == (0, None)
    if outcome == "dedupe":
        assert (new.task_identifier, new.queue_name) == ("old_task", "q1")
        assert count(db, JOBS) == 1
    assert new.run_at == (FUTURE if run_at_kept else LATER)
    assert new.payload == ({"v": 2} if payload_replaced else {"v": 1})


async def test_unsafe_dedupe_returns_an_older_job_of_another_task_with_its_names(
    driver: Driver,
) -> None:
    async with driver.transaction() as tx:
        await tx.add_raw_job("first_task", {}, JobSpec(job_key="k", queue_name="first_queue"))
        await tx.commit()
    async with driver.transaction() as tx:
        job = await tx.add_raw_job(
            "second_task",
            {},
            JobSpec(job_key="k", queue_name="second_queue", job_key_mode=JobKeyMode.UNSAFE_DEDUPE),
        )
    assert (job.task_identifier, job.queue_name, job.revision) == ("first_task", "first_queue", 1)


def test_schema_is_validated_at_construction() -> None:
    with pytest.raises(InvalidIdentifierError):
        JobHelpers(Session(), schema='bad"schema')
    with pytest.raises(InvalidIdentifierError):
        AsyncJobHelpers(AsyncSession(), schema="pg_catalog")
    assert JobHelpers(Session(), schema="Jobs$Q").schema == "Jobs$Q"
