"""``sqlalchemy_graphile.testing``: reading what the code under test enqueued, through the
test's own session in its outer transaction, on asyncpg, psycopg 3 (sync and async) and
psycopg2, with typed, raw, bulk and batch jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from sqlalchemy_graphile import (
    BatchTask,
    ConfigurationError,
    InvalidJobSpecError,
    InvalidTaskError,
    JobHelpers,
    JobSpec,
    PayloadValidationError,
    RawJobSpec,
    SchemaNotInstalledError,
    Task,
    WorkerContext,
)
from sqlalchemy_graphile.testing import (
    EnqueuedJob,
    assert_enqueued,
    assert_not_enqueued,
    enqueued_jobs,
    install_schema,
)

from ._outer_transaction import SCHEMES, Outer, outer_transaction, resolved


class SendEmail(Task):
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str
    subject: str = "Welcome"

    async def run(self, ctx: WorkerContext) -> None: ...


class Notify(BatchTask):
    IDENTIFIER: ClassVar[str] = "notify"
    user_id: str

    @classmethod
    async def run_batch(cls, items: list[Notify], ctx: WorkerContext) -> None: ...


@pytest.fixture(params=list(SCHEMES))
async def outer(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Outer]:
    async with outer_transaction(request.param, db_url) as (session, connection):
        yield Outer(session, connection)


def _committed_jobs(db: psycopg.Connection) -> int:
    row = db.execute("select count(*) from graphile_worker._private_jobs").fetchone()
    assert row is not None
    return int(row[0])


async def test_typed_jobs_are_read_through_the_tests_own_transaction(
    outer: Outer, db: psycopg.Connection
) -> None:
    await outer.add("add_job", SendEmail(to="ada@example.com"), JobSpec(queue_name="mail"))
    await outer.commit()  # the code under test commits its savepoint; nothing is committed
    await outer.add("add_job", SendEmail(to="bob@example.com", subject="Hi"))

    entries = await resolved(enqueued_jobs(outer.session, SendEmail))
    assert [entry.payload for entry in entries] == [
        SendEmail(to="ada@example.com"),
        SendEmail(to="bob@example.com", subject="Hi"),
    ]
    assert all(isinstance(entry, EnqueuedJob) for entry in entries)
    assert [entry.job.queue_name for entry in entries] == ["mail", None]
    assert entries[0].job.id < entries[1].job.id
    assert [entry.batch_index for entry in entries] == [None, None]
    assert _committed_jobs(db) == 0, "another connection sees no job: they are uncommitted"

    [bob] = await resolved(assert_enqueued(outer.session, SendEmail, to="bob@example.com"))
    assert bob.payload.subject == "Hi"
    # The connection works as well as the session, and sees the same rows.
    assert await resolved(enqueued_jobs(outer.connection, SendEmail)) == entries
    await resolved(assert_not_enqueued(outer.session, SendEmail, to="eve@example.com"))


async def test_bulk_raw_and_batch_jobs_give_one_entry_per_payload_or_item(outer: Outer) -> None:
    await outer.add("add_jobs", [(SendEmail(to=f"u{i}@example.com"), None) for i in range(3)])
    await outer.add(
        "add_raw_jobs",
        [RawJobSpec("resize_image", {"id": 7}), RawJobSpec("resize_image", {"id": 8})],
    )
    spec = JobSpec(job_key="notify:digest")
    await outer.add("add_batch_job", [Notify(user_id="u1"), Notify(user_id="u2")], spec)
    await outer.add("add_batch_job", [Notify(user_id="u3")], spec)  # appended to the same job

    await resolved(assert_enqueued(outer.session, SendEmail, count=3))
    await resolved(assert_enqueued(outer.session, "resize_image", id=8))
    items = await resolved(assert_enqueued(outer.session, Notify, count=3))
    assert [(item.payload.user_id, item.batch_index) for item in items] == [
        ("u1", 0),
        ("u2", 1),
        ("u3", 2),
    ]
    assert len({item.job.id for item in items}) == 1, "one batch job holds the three items"
    [u2] = await resolved(assert_enqueued(outer.session, Notify, user_id="u2"))
    assert u2.job.key == "notify:digest"
    # By identifier, an array payload is read as a batch job's items, as parsed JSON.
    raw_items = await resolved(enqueued_jobs(outer.session, "notify"))
    assert [item.payload for item in raw_items] == [{"user_id": f"u{i}"} for i in (1, 2, 3)]
    # No task: every job, oldest first.
    everything = await resolved(enqueued_jobs(outer.session))
    assert [entry.job.task_identifier for entry in everything] == (
        ["send_email"] * 3 + ["resize_image"] * 2 + ["notify"] * 3
    )


async def test_a_spec_matches_queue_key_priority_attempts_run_at_and_flags(outer: Outer) -> None:
    run_at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    spec = JobSpec(
        queue_name="mail",
        job_key="welcome:1",
        priority=-5,
        max_attempts=3,
        run_at=run_at,
        flags=("slow", "paid"),
    )
    await outer.add("add_job", SendEmail(to="ada@example.com"), spec)
    await outer.add("add_job", SendEmail(to="ada@example.com"))

    [entry] = await resolved(assert_enqueued(outer.session, SendEmail, spec=spec))
    assert entry.job.key == "welcome:1"
    assert str(entry) == (
        f"job {entry.job.id}: SendEmail(to='ada@example.com', subject='Welcome'), "
        "queue 'mail', key 'welcome:1', priority -5, flags ['paid', 'slow'], "
        "run_at 2031-01-02T03:04:05+00:00"
    )
    for partial in (
        JobSpec(queue_name="mail"),
        JobSpec(job_key="welcome:1"),
        JobSpec(priority=-5),
        JobSpec(max_attempts=3),
        JobSpec(run_at=run_at),
        JobSpec(flags=("paid", "slow")),
    ):
        await resolved(assert_enqueued(outer.session, SendEmail, count=1, spec=partial))
    for other in (
        JobSpec(queue_name="other"),
        JobSpec(priority=0, queue_name="mail"),
        JobSpec(flags=("slow",)),
    ):
        await resolved(assert_not_enqueued(outer.session, SendEmail, spec=other))


async def test_failed_assertions_say_what_was_expected_and_what_is_there(outer: Outer) -> None:
    await outer.add("add_job", SendEmail(to="bob@example.com"), JobSpec(queue_name="mail"))
    await outer.add("add_job", SendEmail(to="cy@example.com"))
    await outer.add("add_raw_job", "resize_image", {"id": 7})

    with pytest.raises(AssertionError) as missing:
        await resolved(
            assert_enqueued(
                outer.session, SendEmail, to="ada@example.com", spec=JobSpec(queue_name="mail")
            )
        )
    message = str(missing.value)
    ids = [e.job.id for e in await resolved(enqueued_jobs(outer.session, SendEmail))]
    assert message == (
        "expected at least one 'send_email' job (SendEmail) with to='ada@example.com', "
        "queue_name='mail'; found 0.\n"
        "The 'send_email' jobs in the queue (2):\n"
        f"  job {ids[0]}: SendEmail(to='bob@example.com', subject='Welcome'), queue 'mail'\n"
        f"  job {ids[1]}: SendEmail(to='cy@example.com', subject='Welcome')\n"
        "Other jobs in the queue: 'resize_image': 1."
    )

    with pytest.raises(AssertionError) as too_many:
        await resolved(assert_enqueued(outer.session, SendEmail, count=1))
    assert str(too_many.value).startswith(
        "expected exactly 1 'send_email' job (SendEmail); found 2.\nMatching (2):\n"
    )

    with pytest.raises(AssertionError) as present:
        await resolved(assert_not_enqueued(outer.session, "resize_image", id=7))
    assert str(present.value).startswith(
        "expected no 'resize_image' job with id=7; found 1.\nMatching (1):\n"
    )
    assert "'resize_image' {'id': 7}" in str(present.value)

    with pytest.raises(AssertionError, match=r"There is no 'notify' job\."):
        await resolved(assert_enqueued(outer.session, Notify))


async def test_an_empty_queue_is_reported_as_empty(outer: Outer) -> None:
    with pytest.raises(AssertionError) as missing:
        await resolved(assert_enqueued(outer.session, SendEmail, count=2))
    assert str(missing.value) == (
        "expected exactly 2 'send_email' jobs (SendEmail); found 0.\n"
        "There is no 'send_email' job.\n"
        "The queue is empty."
    )
    await resolved(assert_not_enqueued(outer.session))
    assert await resolved(enqueued_jobs(outer.session)) == []


async def test_a_payload_the_task_cannot_read_is_reported(outer: Outer) -> None:
    await outer.add("add_raw_job", "send_email", {"subject": "no address"})
    with pytest.raises(PayloadValidationError, match=r"does not fit SendEmail: to: Field required"):
        await resolved(enqueued_jobs(outer.session, SendEmail))
    await outer.add("add_raw_job", "notify", {"user_id": "not in an array"})
    with pytest.raises(PayloadValidationError, match="is not a JSON array of Notify items"):
        await resolved(enqueued_jobs(outer.session, Notify))


async def test_bad_arguments_raise_typed_errors_when_called(outer: Outer) -> None:
    # Raised by the call itself, before any SQL, even where the result would be awaited.
    with pytest.raises(InvalidTaskError, match=r"'too', which SendEmail does not have; its"):
        enqueued_jobs(outer.session, SendEmail, too="ada@example.com")
    with pytest.raises(InvalidTaskError, match="not a Task or BatchTask subclass"):
        assert_enqueued(outer.session, int)  # type: ignore[type-var, arg-type]
    with pytest.raises(InvalidTaskError, match="takes a Task or BatchTask class"):
        assert_enqueued(outer.session, SendEmail(to="a"))  # type: ignore[call-overload]
    with pytest.raises(InvalidTaskError, match="needs a task identifier"):
        assert_not_enqueued(outer.session, "")
    with pytest.raises(InvalidJobSpecError, match="cannot match job_key_mode"):
        enqueued_jobs(outer.session, SendEmail, spec=JobSpec(job_key_mode="replace"))
    with pytest.raises(InvalidJobSpecError, match="takes spec=JobSpec"):
        enqueued_jobs(outer.session, spec={"queue_name": "x"})  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="count must be an int of at least 0"):
        assert_enqueued(outer.session, SendEmail, count=-1)
    with pytest.raises(ConfigurationError, match="through a Session, AsyncSession"):
        enqueued_jobs("postgresql://", SendEmail)  # type: ignore[call-overload]


def test_a_scoped_session_is_read_through_its_current_session(sync_engine: Any) -> None:
    with sync_engine.connect() as connection, connection.begin():
        scoped = scoped_session(sessionmaker(bind=connection))
        JobHelpers(scoped()).add_job(SendEmail(to="ada@example.com"))
        assert_enqueued(scoped, SendEmail, to="ada@example.com")
        scoped.remove()


def test_a_database_without_the_schema_says_how_to_install_it(empty_db_url: str) -> None:
    engine = create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection:
        with pytest.raises(SchemaNotInstalledError, match="graphile_worker_database fixture"):
            enqueued_jobs(connection, SendEmail)
        connection.rollback()
    engine.dispose()


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2", "postgresql+asyncpg"])
def test_install_schema_installs_once_then_adopts_in_another_schema(
    empty_db_url: str, scheme: str
) -> None:
    url = empty_db_url.replace("postgresql", scheme, 1)
    assert install_schema(url, schema="app_jobs") is True
    assert install_schema(url, schema="app_jobs") is False

    engine = create_engine(empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as connection, connection.begin():
        JobHelpers(Session(bind=connection), schema="app_jobs").add_job(SendEmail(to="a@b.c"))
        assert_enqueued(connection, SendEmail, schema="app_jobs", to="a@b.c")
        with pytest.raises(SchemaNotInstalledError, match="'graphile_worker' is not installed"):
            enqueued_jobs(connection)
    engine.dispose()
