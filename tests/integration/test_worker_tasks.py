"""How tasks run: batch jobs, forbidden flags, invalid stored payloads, sync handlers."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable
from typing import Any

import psycopg
import pytest

from sqlalchemy_graphile import BatchTaskResult

from ._worker_support import Item, Job3, Recorder, SyncItem, SyncTask, Typed, jobs, make_worker

pytestmark = pytest.mark.schema_flavours("ours", "node")


def add_batch(db: psycopg.Connection, *payloads: str, identifier: str = "batch") -> None:
    for payload in payloads:
        db.execute(
            "select graphile_worker.add_job(%s, %s::json, job_key := 'b')", (identifier, payload)
        )


# -- batch jobs (batchJobs.test.ts) -------------------------------------------------------


async def test_batches_jobs_up_in_db(db: psycopg.Connection) -> None:
    add_batch(db, '[{"a":1}]', '[{"a":2}]', '[{"a":3}]')
    (job,) = jobs(db)
    assert job["payload"] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert job["attempts"] == 0
    assert job["job_queue_id"] is None


async def test_batch_success_deletes_job(db_url: str, db: psycopg.Connection) -> None:
    add_batch(db, '[{"a":1}]', '[{"a":2}]', '[{"a":3}]')
    rec = Recorder()
    await make_worker(db_url, Item, rec=rec).run_once()
    assert rec.calls == [("batch", [1, 2, 3])]
    assert jobs(db) == []


async def test_batch_failure_keeps_whole_payload(db_url: str, db: psycopg.Connection) -> None:
    add_batch(db, '[{"a":1}]', '[{"a":2}]', '[{"a":3}]')
    rec = Recorder(fail_with=RuntimeError("whole batch"))
    await make_worker(db_url, Item, rec=rec).run_once()
    (job,) = jobs(db)
    assert job["payload"] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert job["attempts"] == 1
    assert job["last_error"] == "RuntimeError: whole batch"


@pytest.mark.parametrize(
    "result",
    [
        [None, ValueError("one failed"), None, "three failed"],
        BatchTaskResult({1: ValueError("one failed"), 3: "three failed"}),
    ],
    ids=["list", "BatchTaskResult"],
)
async def test_batch_partial_failure_keeps_failed_items_verbatim(
    db_url: str, db: psycopg.Connection, result: Any
) -> None:
    # Spacing and key order inside items are kept byte for byte.
    db.execute(
        """select graphile_worker.add_job('batch',
           '[{"a":0}, { "a" : 1 , "x":"é\\u00e9"},{"a":2},{"z":[1, 2],"a":3}]'::json)"""
    )
    rec = Recorder(batch_result=result)
    await make_worker(db_url, Item, rec=rec).run_once()
    (text, attempts, last_error) = db.execute(
        "select payload::text, attempts, last_error from graphile_worker._private_jobs"
    ).fetchone()  # type: ignore[misc]
    assert text == '[{ "a" : 1 , "x":"é\\u00e9"},{"z":[1, 2],"a":3}]'
    assert attempts == 1
    assert last_error == "Batch failures:\none failed\nthree failed"


async def test_sync_batch_partial_failure(db_url: str, db: psycopg.Connection) -> None:
    add_batch(db, '[{"a":1},{"a":2},{"a":3}]', identifier="sync_batch")
    rec = Recorder()
    await make_worker(db_url, SyncItem, rec=rec).run_once()
    (job,) = jobs(db)
    assert job["payload"] == [{"a": 1}, {"a": 3}]
    assert job["last_error"] == "Batch failures:\nodd 1\nodd 3"
    assert rec.threads
    assert threading.get_ident() not in rec.threads


async def test_batch_result_of_wrong_length_keeps_payload(
    db_url: str, db: psycopg.Connection
) -> None:
    add_batch(db, '[{"a":1},{"a":2},{"a":3}]')
    rec = Recorder(batch_result=[None, None])
    await make_worker(db_url, Item, rec=rec).run_once()
    (job,) = jobs(db)
    assert job["payload"] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert job["attempts"] == 1
    assert job["last_error"].startswith("InvalidTaskError: ")
    assert "returned 2 outcomes for 3 items" in job["last_error"]


async def test_batch_payload_that_is_not_an_array(db_url: str, db: psycopg.Connection) -> None:
    db.execute("""select graphile_worker.add_job('batch', '{"a":1}')""")
    rec = Recorder()
    await make_worker(db_url, Item, rec=rec).run_once()
    (job,) = jobs(db)
    assert rec.calls == []
    assert job["payload"] == {"a": 1}
    assert job["last_error"].startswith("PayloadValidationError: ")
    assert "must be a JSON array" in job["last_error"]
    assert "not an object" in job["last_error"]
    assert job["attempts"] == job["max_attempts"]  # no retry can fix a stored payload


async def test_batch_with_an_invalid_item_names_its_index(
    db_url: str, db: psycopg.Connection
) -> None:
    add_batch(db, '[{"a":1},{"a":"two"},{"a":3}]')
    rec = Recorder()
    await make_worker(db_url, Item, rec=rec).run_once()
    (job,) = jobs(db)
    assert rec.calls == []
    assert job["payload"] == [{"a": 1}, {"a": "two"}, {"a": 3}]
    assert "item 1 of the payload" in job["last_error"]


# -- forbidden flags (forbiddenFlags.test.ts) ---------------------------------------------


async def _async_flags(value: list[str] | None) -> list[str] | None:
    return value


def _flag_options(value: list[str] | None) -> list[Any]:
    def sync() -> list[str] | None:
        return value

    def asynchronous() -> Awaitable[list[str] | None]:
        return _async_flags(value)

    return [value, sync, asynchronous]


async def test_flags_are_stored_as_an_object(db: psycopg.Connection) -> None:
    db.execute("select graphile_worker.add_job('job3', flags := array['a', 'b'])")
    assert jobs(db)[0]["flags"] == {"a": True, "b": True}


@pytest.mark.parametrize("option", _flag_options(["d"]), ids=["list", "function", "async"])
async def test_forbidden_flags_skip_jobs(db_url: str, db: psycopg.Connection, option: Any) -> None:
    db.execute("""select graphile_worker.add_job('job3', '{"a":1}', flags := array['a', 'b'])""")
    db.execute("""select graphile_worker.add_job('job3', '{"a":2}', flags := array['c', 'd'])""")
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec, forbidden_flags=option).run_once()
    assert rec.seen("job3") == [{"a": 1}]
    (job,) = jobs(db)
    assert (job["attempts"], job["flags"]) == (0, {"c": True, "d": True})


@pytest.mark.parametrize(
    "option",
    [*_flag_options(["z"]), *_flag_options([]), *_flag_options(None)],
    ids=lambda o: getattr(o, "__name__", repr(o)),
)
async def test_forbidden_flags_that_match_nothing_run_all(
    db_url: str, db: psycopg.Connection, option: Any
) -> None:
    db.execute("""select graphile_worker.add_job('job3', '{"a":1}', flags := array['a', 'b'])""")
    db.execute("""select graphile_worker.add_job('job3', '{"a":2}', flags := array['c', 'd'])""")
    rec = Recorder()
    await make_worker(db_url, Job3, rec=rec, forbidden_flags=option).run_once()
    assert len(rec.seen("job3")) == 2
    assert jobs(db) == []


# -- payloads and handlers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"to": "x", "count": "many"}', "count: Input should be a valid integer"),
        ('[{"to": "x", "count": 1}]', "(payload): Input should be an object"),
        ('{"to": "x"}', "count: Field required"),
    ],
    ids=["wrong type", "array instead of object", "missing field"],
)
async def test_invalid_stored_payload_fails_the_job_and_the_worker_carries_on(
    db_url: str, db: psycopg.Connection, payload: str, expected: str
) -> None:
    db.execute("select graphile_worker.add_job('typed', %s::json)", (payload,))
    db.execute("""select graphile_worker.add_job('typed', '{"to":"ok","count":2}')""")
    rec = Recorder()
    await make_worker(db_url, Typed, rec=rec).run_once()
    assert rec.seen("typed") == [{"to": "ok", "count": 2}]
    (job,) = jobs(db)
    assert job["last_error"].startswith("PayloadValidationError: the payload of job ")
    assert expected in job["last_error"]
    assert job["payload"] == json.loads(payload)
    assert job["attempts"] == job["max_attempts"] == 25
    assert job["locked_by"] is None


async def test_sync_handler_runs_off_the_event_loop_thread(
    db_url: str, db: psycopg.Connection
) -> None:
    for n in range(3):
        db.execute("select graphile_worker.add_job('sync_task', json_build_object('n', %s))", (n,))
    rec = Recorder()
    await make_worker(db_url, SyncTask, rec=rec, concurrency=2).run_once()
    assert sorted(rec.seen("sync_task")) == [0, 1, 2]
    assert threading.get_ident() not in rec.threads
    assert jobs(db) == []
