"""Hostile and invalid input through the helpers: round trips byte for byte, or a typed error
before any SQL is sent."""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import psycopg
import pytest

from sqlalchemy_graphile import (
    InvalidJobSpecError,
    InvalidPayloadError,
    JobSpec,
    PayloadNotSerializableError,
    RawJobSpec,
    Task,
)
from sqlalchemy_graphile._payload import MAX_PAYLOAD_BYTES
from sqlalchemy_graphile.context import WorkerContext

from ._enqueue_drivers import Driver, Tx

pytestmark = pytest.mark.schema_flavours

HOSTILE = [
    "'",
    '"',
    "'); drop table graphile_worker._private_jobs; --",
    "$$",
    "$tag$ body $tag$",
    "%s",
    "%(name)s",
    "%%",
    ":name",
    ":name::text",
    "-- comment",
    "/* comment */",
    "\\",
    "\\u0000",  # a backslash and five characters, not a NUL
    "😀 emoji",
    "\u200f right-to-left mark",
    "\u202e override",
    "e\u0301 combining",
    "\u0301",
    "tab\tnew\nline\rcr",
    "\x01\x1f control",
    "{a,b}",
    "NULL",
    "  padded  ",
    "\u2028\u2029",
    "\ufeff",
    "\U0010fffd",
]


class Echo(Task):
    IDENTIFIER: ClassVar[str] = "echo"
    value: Any = None

    async def run(self, ctx: WorkerContext) -> None:
        return None


class Measure(Task):
    IDENTIFIER: ClassVar[str] = "measure"
    value: float

    async def run(self, ctx: WorkerContext) -> None:
        return None


def stored(db: psycopg.Connection, job_id: int) -> tuple[Any, ...]:
    row = db.execute(
        "select tasks.identifier, queues.queue_name, jobs.key, jobs.flags::text,"
        " jobs.payload::text"
        " from graphile_worker._private_jobs as jobs"
        " join graphile_worker._private_tasks as tasks on tasks.id = jobs.task_id"
        " left join graphile_worker._private_job_queues as queues"
        " on queues.id = jobs.job_queue_id where jobs.id = %s",
        [job_id],
    ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
async def test_hostile_strings_round_trip_byte_for_byte(
    driver: Driver, db: psycopg.Connection, bulk: bool
) -> None:
    specs = [
        RawJobSpec(
            f"task {n} {value}",
            {value: value, "list": [value]},
            JobSpec(queue_name=f"q{n} {value}", job_key=f"k{n} {value}", flags=(value, f"f{n}")),
        )
        for n, value in enumerate(HOSTILE)
    ]
    async with driver.transaction() as tx:
        if bulk:
            jobs = await tx.add_raw_jobs(specs)
        else:
            jobs = [await tx.add_raw_job(s.identifier, s.payload, s.spec) for s in specs]
        await tx.commit()
    for spec, job in zip(specs, jobs, strict=True):
        assert spec.spec is not None
        assert job.task_identifier == spec.identifier
        assert job.queue_name == spec.spec.queue_name
        assert job.key == spec.spec.job_key
        assert job.flags == dict.fromkeys(spec.spec.flags or (), True)
        assert job.payload == spec.payload
        identifier, queue_name, key, flags, payload = stored(db, job.id)
        assert (identifier, queue_name, key) == (job.task_identifier, job.queue_name, job.key)
        assert json.loads(flags) == job.flags
        assert payload == job.payload_json  # the stored text is exactly what we sent
        assert json.loads(payload) == spec.payload


async def test_hostile_strings_in_typed_task_payload(driver: Driver) -> None:
    async with driver.transaction() as tx:
        jobs = await tx.add_jobs([(Echo(value=v), None) for v in HOSTILE])
        removed = await tx.add_job(Echo(value=None), JobSpec(job_key=HOSTILE[2]))
        gone = await tx.remove_job(HOSTILE[2])
    assert [Echo.model_validate_json(job.payload_json).value for job in jobs] == HOSTILE
    assert gone is not None
    assert gone.id == removed.id


async def test_one_megabyte_payload(driver: Driver, db: psycopg.Connection) -> None:
    big = "x😀" * (1024 * 1024 // 5)
    async with driver.transaction() as tx:
        job = await tx.add_job(Echo(value=big))
        (bulk,) = await tx.add_raw_jobs([RawJobSpec("echo", {"value": big})])
        await tx.commit()
    assert len(job.payload_json.encode()) > 1_000_000
    assert Echo.model_validate_json(job.payload_json).value == big
    assert stored(db, job.id)[4] == job.payload_json
    assert stored(db, bulk.id)[4] == bulk.payload_json


# --- rejected before any SQL ---------------------------------------------------------------


async def assert_refused_before_sql(
    driver: Driver, tx: Tx, error: type[Exception], call: Any, match: str
) -> None:
    """``call()`` raises ``error`` without sending a statement, and the transaction stays
    usable (a statement that failed in PostgreSQL would have aborted it)."""
    before = len(driver.statements)
    with pytest.raises(error, match=match):
        await call()
    assert len(driver.statements) == before
    assert await tx.scalar("select 1") == 1


TOO_LONG_IDENTIFIER = "t" * 129
TOO_LONG_KEY = "k" * 513
NESTED: list[Any] = []
_cursor = NESTED
for _ in range(5000):
    _cursor.append([])
    _cursor = _cursor[0]


@pytest.mark.parametrize(
    ("identifier", "payload", "error", "match"),
    [
        (TOO_LONG_IDENTIFIER, None, InvalidJobSpecError, "129 characters"),
        ("", None, InvalidJobSpecError, "empty"),
        ("nul\x00", None, InvalidJobSpecError, "NUL"),
        ("surrogate\ud800", None, InvalidJobSpecError, "surrogate"),
        (42, None, InvalidJobSpecError, "str"),
        ("t", {"k": "nul\x00"}, InvalidPayloadError, "NUL"),
        ("t", {"nul\x00": 1}, InvalidPayloadError, "NUL"),
        ("t", {"k": "\udfff"}, InvalidPayloadError, "surrogate"),
        ("t", {"k": math.nan}, InvalidPayloadError, "JSON"),
        ("t", {"k": math.inf}, InvalidPayloadError, "JSON"),
        ("t", {"k": {1, 2}}, PayloadNotSerializableError, "serialisable"),
        ("t", {"k": object()}, PayloadNotSerializableError, "serialisable"),
        ("t", {"k": b"bytes"}, PayloadNotSerializableError, "serialisable"),
        ("t", "x" * (MAX_PAYLOAD_BYTES + 1), InvalidPayloadError, "limit"),
        ("t", NESTED, InvalidPayloadError, "deeply"),
    ],
    ids=[
        "identifier-too-long",
        "identifier-empty",
        "identifier-nul",
        "identifier-surrogate",
        "identifier-not-str",
        "payload-nul-value",
        "payload-nul-key",
        "payload-surrogate",
        "payload-nan",
        "payload-infinity",
        "payload-set",
        "payload-object",
        "payload-bytes",
        "payload-too-large",
        "payload-too-deep",
    ],
)
async def test_bad_raw_jobs_are_refused_before_sql(
    driver: Driver, db: psycopg.Connection, identifier: Any, payload: Any, error: type, match: str
) -> None:
    async with driver.transaction() as tx:
        await tx.add_raw_job("before", {})
        await assert_refused_before_sql(
            driver, tx, error, lambda: tx.add_raw_job(identifier, payload), match
        )
        if isinstance(identifier, str) and identifier and error is InvalidPayloadError:
            await assert_refused_before_sql(
                driver,
                tx,
                error,
                lambda: tx.add_raw_jobs([RawJobSpec(identifier, payload)]),
                match,
            )
        await tx.add_raw_job("after", {})
        await tx.commit()
    rows = db.execute("select task_identifier from graphile_worker.jobs order by id").fetchall()
    assert [r[0] for r in rows] == ["before", "after"]


@pytest.mark.parametrize(
    ("key", "match"),
    [("", "1..512"), (TOO_LONG_KEY, "1..512"), ("nul\x00", "NUL"), ("\ud83d", "surrogate")],
    ids=["empty", "too-long", "nul", "surrogate"],
)
async def test_bad_keys_are_refused_by_remove_job_before_sql(
    driver: Driver, key: str, match: str
) -> None:
    async with driver.transaction() as tx:
        await tx.scalar("select 1")
        await assert_refused_before_sql(
            driver, tx, InvalidJobSpecError, lambda: tx.remove_job(key), match
        )


async def test_bad_spec_objects_are_refused_before_sql(driver: Driver) -> None:
    async with driver.transaction() as tx:
        await tx.scalar("select 1")
        await assert_refused_before_sql(
            driver,
            tx,
            InvalidJobSpecError,
            lambda: tx.add_raw_job("t", {}, {"queue_name": "q"}),  # type: ignore[arg-type]
            "JobSpec",
        )
        await assert_refused_before_sql(
            driver,
            tx,
            InvalidJobSpecError,
            lambda: tx.add_raw_jobs([("t", {})]),  # type: ignore[list-item]
            "RawJobSpec",
        )
        await assert_refused_before_sql(
            driver, tx, InvalidPayloadError, lambda: tx.add_job(Measure(value=math.nan)), "JSON"
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"queue_name": "q" * 129},
        {"queue_name": ""},
        {"queue_name": "nul\x00"},
        {"queue_name": "\udc00"},
        {"job_key": TOO_LONG_KEY},
        {"job_key": ""},
        {"job_key": "nul\x00"},
        {"flags": ("ok", "nul\x00")},
        {"flags": ("\ud800",)},
        {"max_attempts": 0},
        {"max_attempts": 32768},
        {"priority": 40000},
        {"priority": -32769},
        {"job_key_mode": "bogus"},
        {"unknown_field": 1},
        {"run_at": "2024-01-01T00:00:00"},
    ],
)
def test_bad_job_spec_values_fail_at_construction(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidJobSpecError):
        JobSpec(**fields)
