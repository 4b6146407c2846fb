"""The seven SQL functions behave as Graphile Worker's: adding jobs (job keys, batch jobs),
completing, failing, rescheduling, removing and unlocking them.

Every test calls the functions directly on a real database (``db`` is an autocommit
psycopg connection, so each call is its own transaction).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

pytestmark = pytest.mark.schema_flavours

S = "graphile_worker"
ROW_COLUMNS = [
    "id",
    "job_queue_id",
    "task_id",
    "payload",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "updated_at",
    "key",
    "locked_at",
    "locked_by",
    "revision",
    "flags",
    "is_available",
]
NOTIFY_DEADLINE = 10.0

Row = dict[str, Any]


# --- helpers ------------------------------------------------------------------------------


def _arguments(kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Named-notation arguments. Names come from this test module, values are bound."""
    casts = {
        "payload": "::json",
        "flags": "::text[]",
        "run_at": "::timestamptz",
        "job_ids": "::bigint[]",
    }
    parts = [f"{name} := %({name})s{casts.get(name, '')}" for name in kwargs]
    params = {
        name: json.dumps(value) if name == "payload" and value is not None else value
        for name, value in kwargs.items()
    }
    return ", ".join(parts), params


def call(conn: psycopg.Connection, function: str, **kwargs: Any) -> list[Row]:
    """``select *, now() as txn_now from graphile_worker.<function>(...)`` in one transaction."""
    arguments, params = _arguments(kwargs)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"select *, now() as txn_now from {S}.{function}({arguments})", params)
        return cur.fetchall()


def add_job(conn: psycopg.Connection, identifier: str = "job1", **kwargs: Any) -> Row:
    rows = call(conn, "add_job", identifier=identifier, **kwargs)
    assert len(rows) == 1
    return rows[0]


def add_jobs(
    conn: psycopg.Connection, specs: list[dict[str, Any]], preserve_run_at: bool = False
) -> list[Row]:
    """``add_jobs`` with specs given as dicts (converted with ``json_populate_recordset``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"select * from {S}.add_jobs("
            f"  array(select json_populate_recordset(null::{S}.job_spec, %s::json)),"
            "  %s)",
            (json.dumps(specs), preserve_run_at),
        )
        return cur.fetchall()


def jobs(conn: psycopg.Connection, where: str = "true", params: Any = None) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"select jobs.*, tasks.identifier as task_identifier, queues.queue_name"
            f"  from {S}._private_jobs as jobs"
            f"  join {S}._private_tasks as tasks on tasks.id = jobs.task_id"
            f"  left join {S}._private_job_queues as queues on queues.id = jobs.job_queue_id"
            f" where {where} order by jobs.id",
            params,
        )
        return cur.fetchall()


def job(conn: psycopg.Connection, job_id: int) -> Row:
    (row,) = jobs(conn, "jobs.id = %s", (job_id,))
    return row


def update_job(conn: psycopg.Connection, job_id: int, assignments: str) -> Row:
    """Put a job into a state (locked, failed, ...) as a worker would have left it."""
    conn.execute(f"update {S}._private_jobs set {assignments} where id = %s", (job_id,))
    return job(conn, job_id)


def without(row: Row, *names: str) -> Row:
    return {k: v for k, v in row.items() if k not in names}


def db_now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("select now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


class Listener:
    """A connection LISTENing on ``jobs:insert``.

    :meth:`received` sends a unique sentinel notification from ``sender`` and returns every
    payload that arrived before it. Notifications are delivered in commit order, so the
    sentinel proves that nothing else is still on its way (including "no notification").
    """

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute('listen "jobs:insert"')

    def received(self, sender: psycopg.Connection) -> list[str]:
        sentinel = f"sentinel-{uuid.uuid4()}"
        sender.execute("select pg_notify('jobs:insert', %s)", (sentinel,))
        if not sender.autocommit:
            sender.commit()
        payloads: list[str] = []
        for notification in self.conn.notifies(timeout=NOTIFY_DEADLINE):
            if notification.payload == sentinel:
                return payloads
            payloads.append(notification.payload)
        raise AssertionError(f"no sentinel within {NOTIFY_DEADLINE} s; got {payloads!r}")

    def counts(self, sender: psycopg.Connection) -> list[int | None]:
        """The ``count`` of each payload received (None for an empty payload)."""
        result: list[int | None] = []
        for payload in self.received(sender):
            if payload == "":
                result.append(None)
                continue
            decoded = json.loads(payload)
            assert set(decoded) == {"r", "count"}
            assert isinstance(decoded["r"], float)
            result.append(decoded["count"])
        return result

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(db_url: str, db: psycopg.Connection) -> Iterator[Listener]:
    listening = Listener(db_url)
    yield listening
    listening.close()


@pytest.fixture
def future(db: psycopg.Connection) -> datetime:
    """A run_at an hour ahead of the database clock."""
    return db_now(db) + timedelta(hours=1)


# --- add_job: defaults, validation, flags -------------------------------------------------


def test_add_job_defaults(db: psycopg.Connection, listener: Listener) -> None:
    row = add_job(db, "job1")
    assert row["payload"] == {}
    assert row["priority"] == 0
    assert row["run_at"] == row["txn_now"]
    assert row["created_at"] == row["updated_at"] == row["txn_now"]
    assert row["attempts"] == 0
    assert row["max_attempts"] == 25
    assert row["revision"] == 0
    assert row["job_queue_id"] is None
    assert row["key"] is row["flags"] is row["last_error"] is None
    assert row["locked_at"] is row["locked_by"] is None
    assert row["is_available"] is True
    assert list(row)[:-1] == ROW_COLUMNS
    assert listener.counts(db) == [1]


def test_add_job_registers_task_and_queue_once(db: psycopg.Connection) -> None:
    first = add_job(db, "job1", queue_name="q")
    second = add_job(db, "job1", queue_name="q")
    assert first["task_id"] == second["task_id"]
    assert first["job_queue_id"] == second["job_queue_id"] is not None
    assert db.execute(f"select identifier from {S}._private_tasks").fetchall() == [("job1",)]
    assert db.execute(f"select queue_name from {S}._private_job_queues").fetchall() == [("q",)]


def test_payload_is_stored_as_given(db: psycopg.Connection) -> None:
    row = db.execute(
        f"select payload::text from {S}.add_job('job1', '{{\"b\" : 2,  \"a\":1}}'::json)"
    ).fetchone()
    assert row == ('{"b" : 2,  "a":1}',)


@pytest.mark.parametrize(
    ("flags", "stored"),
    [
        (None, None),
        ([], None),
        (["a", "b"], {"a": True, "b": True}),
        (["a", "a"], {"a": True}),
    ],
)
def test_flags_become_an_object(db: psycopg.Connection, flags: Any, stored: Any) -> None:
    assert add_job(db, flags=flags)["flags"] == stored
    (added,) = add_jobs(db, [{"identifier": "job1", "flags": flags}])
    assert added["flags"] == stored


@pytest.mark.parametrize(
    ("kwargs", "sqlstate", "constraint"),
    [
        ({"job_key": ""}, "23514", "jobs_key_check"),
        ({"job_key": "k" * 513}, "23514", "jobs_key_check"),
        ({"max_attempts": 0}, "23514", "jobs_max_attempts_check"),
        ({"max_attempts": -1}, "23514", "jobs_max_attempts_check"),
        ({"identifier": "t" * 129}, "23514", "tasks_identifier_check"),
        ({"queue_name": "q" * 129}, "23514", "job_queues_queue_name_check"),
        ({"priority": 40000}, "22003", None),
        ({"priority": -40000}, "22003", None),
        ({"max_attempts": 40000}, "22003", None),
    ],
)
def test_invalid_values_are_refused_by_the_database(
    db: psycopg.Connection, kwargs: dict[str, Any], sqlstate: str, constraint: str | None
) -> None:
    arguments = {"identifier": "job1", **kwargs}
    with pytest.raises(psycopg.Error) as caught:
        call(db, "add_job", **arguments)
    assert caught.value.sqlstate == sqlstate
    if constraint is not None:
        assert caught.value.diag.constraint_name == constraint
    assert jobs(db) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"job_key": "k" * 512},
        {"max_attempts": 1},
        {"max_attempts": 32767},
        {"identifier": "t" * 128},
        {"queue_name": "q" * 128},
        {"priority": 32767},
        {"priority": -32768},
    ],
)
def test_boundary_values_are_accepted(db: psycopg.Connection, kwargs: dict[str, Any]) -> None:
    row = add_job(db, **{"identifier": "job1", **kwargs})
    assert row["id"] is not None


def test_bogus_job_key_mode_with_a_key_raises_gwbkm(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error) as caught:
        call(db, "add_job", identifier="job1", job_key="k", job_key_mode="bogus")
    assert caught.value.sqlstate == "GWBKM"
    assert jobs(db) == []


def test_bogus_job_key_mode_without_a_key_is_ignored(db: psycopg.Connection) -> None:
    row = add_job(db, job_key_mode="bogus")
    assert row["key"] is None
    assert len(jobs(db)) == 1


def test_null_job_key_mode_means_replace(db: psycopg.Connection, future: datetime) -> None:
    first = add_job(db, job_key="k", run_at=future, payload={"a": 1})
    second = add_job(db, job_key="k", job_key_mode=None, payload={"a": 2})
    assert second["id"] == first["id"]
    assert second["payload"] == {"a": 2}
    assert second["run_at"] == second["txn_now"]


# --- job keys (https://worker.graphile.org/docs/job-key), row by row ----------------------

MODES = ["replace", "preserve_run_at", "unsafe_dedupe"]

# The state the existing keyed job is put in before the second add_job.
STATES: dict[str, str | None] = {
    "pending": None,
    "awaiting_retry": "attempts = 1, last_error = 'boom', run_at = now() + interval '1 minute'",
    "permanently_failed": "attempts = max_attempts, last_error = 'dead'",
    "locked": "attempts = 1, locked_at = now(), locked_by = 'pool-test'",
}

# What the second add_job does, per (state, mode), as Graphile Worker's add_job does it.
OUTCOMES = {
    ("none", "replace"): "insert",
    ("none", "preserve_run_at"): "insert",
    ("none", "unsafe_dedupe"): "insert",
    ("pending", "replace"): "update",
    ("pending", "preserve_run_at"): "update_keeping_run_at",
    ("pending", "unsafe_dedupe"): "bump_revision",
    ("awaiting_retry", "replace"): "update",
    ("awaiting_retry", "preserve_run_at"): "update",
    ("awaiting_retry", "unsafe_dedupe"): "bump_revision",
    ("permanently_failed", "replace"): "retire_and_insert",
    ("permanently_failed", "preserve_run_at"): "retire_and_insert",
    ("permanently_failed", "unsafe_dedupe"): "bump_revision",
    ("locked", "replace"): "retire_and_insert",
    ("locked", "preserve_run_at"): "retire_and_insert",
    ("locked", "unsafe_dedupe"): "bump_revision",
}


@pytest.mark.parametrize(("state", "mode"), list(OUTCOMES))
def test_job_key_table(
    db: psycopg.Connection, listener: Listener, future: datetime, state: str, mode: str
) -> None:
    existing: Row | None = None
    if state != "none":
        created = add_job(
            db,
            "job1",
            payload={"v": 1},
            queue_name="q1",
            run_at=future,
            max_attempts=10,
            job_key="k",
            priority=3,
            flags=["x"],
        )
        assignments = STATES[state]
        existing = job(db, created["id"])
        if assignments is not None:
            existing = update_job(db, created["id"], assignments)
        listener.received(db)  # discard the notification of the first add

    new_run_at = future + timedelta(hours=1)
    row = add_job(
        db,
        "job2",
        payload={"v": 2},
        queue_name="q2",
        run_at=new_run_at,
        max_attempts=5,
        job_key="k",
        priority=1,
        flags=["y"],
        job_key_mode=mode,
    )
    now = row["txn_now"]
    outcome = OUTCOMES[(state, mode)]
    notified = outcome != "bump_revision"
    assert listener.counts(db) == ([1] if notified else [])

    def as_requested(found: Row) -> None:
        assert found["task_identifier"] == "job2"
        assert found["queue_name"] == "q2"
        assert found["payload"] == {"v": 2}
        assert found["max_attempts"] == 5
        assert found["priority"] == 1
        assert found["flags"] == {"y": True}
        assert found["attempts"] == 0
        assert found["last_error"] is None
        assert found["key"] == "k"

    if outcome == "insert":
        (found,) = jobs(db)
        as_requested(found)
        assert found["revision"] == 0
        assert found["run_at"] == new_run_at
        return

    assert existing is not None
    if outcome in ("update", "update_keeping_run_at"):
        (found,) = jobs(db)
        assert found["id"] == row["id"] == existing["id"]
        as_requested(found)
        assert found["revision"] == 1
        assert found["updated_at"] == now
        expected_run_at = existing["run_at"] if outcome == "update_keeping_run_at" else new_run_at
        assert found["run_at"] == expected_run_at
        assert found["locked_at"] is None
    elif outcome == "bump_revision":
        (found,) = jobs(db)
        assert found["id"] == row["id"] == existing["id"]
        assert without(found, "revision", "updated_at") == without(
            existing, "revision", "updated_at"
        )
        assert found["revision"] == existing["revision"] + 1
        assert found["updated_at"] == now
    else:
        assert outcome == "retire_and_insert"
        old, new = jobs(db)
        assert old["id"] == existing["id"]
        assert new["id"] == row["id"] != existing["id"]
        # The old job keeps its state but loses its key and will never be retried.
        assert without(old, "key", "attempts", "updated_at", "is_available") == without(
            existing, "key", "attempts", "updated_at", "is_available"
        )
        assert old["key"] is None
        assert old["attempts"] == old["max_attempts"] == 10
        assert old["updated_at"] == now
        assert old["is_available"] is False
        as_requested(new)
        assert new["revision"] == 0
        assert new["run_at"] == new_run_at


def test_preserve_run_at_applies_only_while_attempts_is_zero(
    db: psycopg.Connection, future: datetime
) -> None:
    first = add_job(db, job_key="k", run_at=future)
    later = future + timedelta(hours=2)
    kept = add_job(db, job_key="k", run_at=later, job_key_mode="preserve_run_at")
    assert kept["run_at"] == first["run_at"]
    update_job(db, first["id"], "attempts = 1")
    replaced = add_job(db, job_key="k", run_at=later, job_key_mode="preserve_run_at")
    assert replaced["run_at"] == later
    assert replaced["attempts"] == 0


def test_job_key_modes_in_sequence(db: psycopg.Connection, future: datetime) -> None:
    """Node's "supports the jobKey API with jobKeyMode" sequence."""
    run_at1 = future
    run_at2 = future + timedelta(hours=1)
    run_at3 = future + timedelta(hours=2)
    run_at4 = future + timedelta(hours=3)
    first = add_job(db, payload={"a": 1}, job_key="UNIQUE", run_at=run_at1)
    assert (first["revision"], first["payload"], first["run_at"]) == (0, {"a": 1}, run_at1)
    second = add_job(
        db, payload={"a": 2}, job_key="UNIQUE", run_at=run_at2, job_key_mode="preserve_run_at"
    )
    assert (second["revision"], second["payload"], second["run_at"]) == (1, {"a": 2}, run_at1)
    third = add_job(
        db, payload={"a": 3}, job_key="UNIQUE", run_at=run_at3, job_key_mode="unsafe_dedupe"
    )
    assert (third["revision"], third["payload"], third["run_at"]) == (2, {"a": 2}, run_at1)
    fourth = add_job(db, payload={"a": 4}, job_key="UNIQUE", run_at=run_at4)
    assert (fourth["revision"], fourth["payload"], fourth["run_at"]) == (3, {"a": 4}, run_at4)
    assert {first["id"], second["id"], third["id"], fourth["id"]} == {first["id"]}
    assert len(jobs(db)) == 1


def test_job_details_are_reset_if_not_specified_in_update(
    db: psycopg.Connection, future: datetime
) -> None:
    original = add_job(
        db,
        "job1",
        payload={"a": 1},
        queue_name="queue1",
        run_at=future,
        max_attempts=10,
        job_key="abc",
    )
    bare = add_job(db, "job1", job_key="abc")
    assert bare["id"] == original["id"]
    found = job(db, original["id"])
    assert found["max_attempts"] == 25
    assert found["payload"] == {}
    assert found["queue_name"] is None
    assert found["attempts"] == 0
    assert found["run_at"] == bare["txn_now"]

    later = future + timedelta(hours=1)
    full = add_job(
        db,
        "job2",
        payload={"a": 2},
        queue_name="queue2",
        run_at=later,
        max_attempts=100,
        job_key="abc",
        priority=5,
        flags=["f"],
    )
    assert full["id"] == original["id"]
    found = job(db, original["id"])
    assert found["task_identifier"] == "job2"
    assert found["queue_name"] == "queue2"
    assert found["payload"] == {"a": 2}
    assert found["run_at"] == later
    assert found["max_attempts"] == 100
    assert found["priority"] == 5
    assert found["flags"] == {"f": True}
    assert found["revision"] == 2


def test_unsafe_dedupe_on_a_locked_job_changes_only_the_revision(
    db: psycopg.Connection, listener: Listener
) -> None:
    created = add_job(db, job_key="k", payload={"a": 1})
    locked = update_job(db, created["id"], "attempts = 1, locked_at = now(), locked_by = 'pool-x'")
    listener.received(db)
    same = add_job(db, job_key="k", payload={"a": 2}, job_key_mode="unsafe_dedupe")
    assert same["id"] == created["id"]
    found = job(db, created["id"])
    assert without(found, "revision", "updated_at") == without(locked, "revision", "updated_at")
    assert found["revision"] == 1
    assert listener.counts(db) == []


def test_key_is_reusable_after_the_job_completes(db: psycopg.Connection) -> None:
    first = add_job(db, job_key="k", payload={"n": 1})
    assert [r["id"] for r in call(db, "complete_jobs", job_ids=[first["id"]])] == [first["id"]]
    second = add_job(db, job_key="k", payload={"n": 2})
    assert second["id"] != first["id"]
    assert second["revision"] == 0


# --- array payloads (batch jobs) ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["replace", "preserve_run_at"])
def test_array_payloads_accumulate(db: psycopg.Connection, future: datetime, mode: str) -> None:
    first = add_job(db, payload=[{"a": 1}], job_key="batch", run_at=future, job_key_mode=mode)
    add_job(db, payload=[{"a": 2}], job_key="batch", run_at=future, job_key_mode=mode)
    last = add_job(db, payload=[{"a": 3}], job_key="batch", job_key_mode=mode)
    (found,) = jobs(db)
    assert found["id"] == first["id"] == last["id"]
    assert found["payload"] == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert found["attempts"] == 0
    assert found["revision"] == 2
    expected_run_at = future if mode == "preserve_run_at" else last["txn_now"]
    assert found["run_at"] == expected_run_at
    assert db.execute(f"select count(*) from {S}._private_job_queues").fetchone() == (0,)


def test_array_merge_resets_attempts_and_error(db: psycopg.Connection) -> None:
    first = add_job(db, payload=[1], job_key="batch")
    update_job(db, first["id"], "attempts = 2, last_error = 'boom'")
    merged = add_job(db, payload=[2], job_key="batch")
    assert merged["payload"] == [1, 2]
    assert merged["attempts"] == 0
    assert merged["last_error"] is None


@pytest.mark.parametrize(
    ("old", "new"),
    [([{"a": 1}], {"b": 2}), ({"a": 1}, [{"b": 2}]), ({"a": 1}, {"b": 2}), ([1], "text")],
)
def test_non_array_payloads_replace(db: psycopg.Connection, old: Any, new: Any) -> None:
    add_job(db, payload=old, job_key="k")
    assert add_job(db, payload=new, job_key="k")["payload"] == new


def test_unsafe_dedupe_does_not_merge_arrays(db: psycopg.Connection) -> None:
    add_job(db, payload=[1], job_key="k")
    same = add_job(db, payload=[2], job_key="k", job_key_mode="unsafe_dedupe")
    assert same["payload"] == [1]


# --- add_jobs -----------------------------------------------------------------------------


def test_add_jobs_inserts_all_specs_in_order(db: psycopg.Connection, listener: Listener) -> None:
    specs = [{"identifier": "job1", "payload": {"a": n}} for n in range(1, 7)]
    rows = add_jobs(db, specs)
    assert [r["payload"] for r in rows] == [{"a": n} for n in range(1, 7)]
    assert len(jobs(db)) == 6
    assert listener.counts(db) == [6]


def test_add_jobs_key_updates_with_preserve_run_at(
    db: psycopg.Connection, future: datetime
) -> None:
    """Node's addJobs "supports the jobKey API with jobKeyMode"."""
    run_at1, run_at2, run_at3 = (future + timedelta(hours=n) for n in range(3))

    def spec(a: int, run_at: datetime) -> dict[str, Any]:
        return {"identifier": "job1", "payload": {"a": a}, "job_key": "K", "run_at": str(run_at)}

    (first,) = add_jobs(db, [spec(1, run_at1)])
    (second,) = add_jobs(db, [spec(2, run_at2)], preserve_run_at=True)
    assert (second["id"], second["revision"], second["run_at"]) == (first["id"], 1, run_at1)
    assert second["payload"] == {"a": 2}
    (third,) = add_jobs(db, [spec(3, run_at3)])
    assert (third["id"], third["revision"], third["run_at"]) == (first["id"], 2, run_at3)


def test_add_jobs_with_two_specs_sharing_a_key_fails_as_a_whole(db: psycopg.Connection) -> None:
    specs = [
        {"identifier": "job1", "payload": {"a": 1}, "job_key": "same"},
        {"identifier": "job1", "payload": {"a": 2}, "job_key": "same"},
    ]
    with pytest.raises(psycopg.errors.CardinalityViolation) as caught:
        add_jobs(db, specs)
    assert caught.value.sqlstate == "21000"
    assert jobs(db) == []


def test_add_jobs_retires_a_locked_keyed_job(db: psycopg.Connection) -> None:
    (original,) = add_jobs(db, [{"identifier": "job1", "job_key": "k"}])
    update_job(db, original["id"], "attempts = 1, locked_at = now(), locked_by = 'pool-x'")
    (new,) = add_jobs(db, [{"identifier": "job1", "job_key": "k"}])
    assert new["id"] != original["id"]
    old = job(db, original["id"])
    assert old["key"] is None
    assert old["attempts"] == old["max_attempts"]
    assert old["locked_by"] == "pool-x"


def test_add_jobs_notifications(db: psycopg.Connection, listener: Listener) -> None:
    add_jobs(db, [{"identifier": "job1"}, {"identifier": "job2"}])
    assert listener.counts(db) == [2]
    assert add_jobs(db, []) == []
    assert listener.received(db) == [""]


def test_add_job_notifies_count_one(db: psycopg.Connection, listener: Listener) -> None:
    add_job(db, "job1")
    add_job(db, "job1", job_key="k", job_key_mode="unsafe_dedupe")
    payloads = listener.received(db)
    assert [json.loads(p)["count"] for p in payloads] == [1, 1]
    # The random field keeps two otherwise identical notifications apart.
    assert payloads[0] != payloads[1]


def test_notifications_are_sent_only_on_commit(db_url: str, listener: Listener) -> None:
    with psycopg.connect(db_url) as conn:
        add_job(conn, "job1")
        conn.rollback()
        assert listener.counts(conn) == []
        add_job(conn, "job1")
        conn.commit()
        assert listener.counts(conn) == [1]


# --- remove_job ---------------------------------------------------------------------------


def test_remove_job_deletes_a_pending_job(db: psycopg.Connection, listener: Listener) -> None:
    created = add_job(db, job_key="abc")
    listener.received(db)
    (removed,) = call(db, "remove_job", job_key="abc")
    assert removed["id"] == created["id"]
    assert jobs(db) == []
    assert listener.counts(db) == [-1]


def test_remove_job_deletes_a_job_locked_over_four_hours_ago(db: psycopg.Connection) -> None:
    created = add_job(db, job_key="abc")
    update_job(db, created["id"], "locked_at = now() - interval '4 hours 1 minute'")
    (removed,) = call(db, "remove_job", job_key="abc")
    assert removed["id"] == created["id"]
    assert jobs(db) == []


def test_remove_job_on_a_locked_job_keeps_it_but_ends_its_retries(
    db: psycopg.Connection, listener: Listener
) -> None:
    created = add_job(db, job_key="abc")
    locked = update_job(db, created["id"], "attempts = 1, locked_at = now(), locked_by = 'pool-x'")
    listener.received(db)
    (returned,) = call(db, "remove_job", job_key="abc")
    assert returned["id"] == created["id"]
    found = job(db, created["id"])
    assert found["key"] is None
    assert found["attempts"] == found["max_attempts"] == 25
    assert found["updated_at"] == returned["txn_now"]
    assert without(found, "key", "attempts", "updated_at", "is_available") == without(
        locked, "key", "attempts", "updated_at", "is_available"
    )
    assert listener.counts(db) == []


def test_remove_job_with_a_missing_key_returns_one_all_null_row(db: psycopg.Connection) -> None:
    add_job(db, job_key="other")
    rows = db.execute(f"select * from {S}.remove_job('missing')").fetchall()
    assert rows == [(None,) * len(ROW_COLUMNS)]
    assert len(jobs(db)) == 1


def test_remove_job_is_strict(db: psycopg.Connection, listener: Listener) -> None:
    add_job(db)  # a job without a key
    listener.received(db)
    rows = db.execute(f"select * from {S}.remove_job(null)").fetchall()
    assert rows == [(None,) * len(ROW_COLUMNS)]
    assert len(jobs(db)) == 1
    assert listener.counts(db) == []


# --- complete / permanently fail / reschedule ---------------------------------------------


@pytest.fixture
def selection(db: psycopg.Connection, future: datetime) -> dict[str, Row]:
    """Node's selection of five future jobs (one permanently failed, one locked by 'test'),
    plus one whose lock is more than four hours old."""
    names = ["failed", "regular1", "locked", "regular2", "untouched", "stale"]
    created = {
        name: add_job(db, "job3", payload={"a": n}, run_at=future)
        for n, name in enumerate(names, 1)
    }
    update_job(db, created["locked"]["id"], "locked_by = 'test', locked_at = now()")
    update_job(
        db, created["failed"]["id"], "attempts = max_attempts, last_error = 'Failed forever'"
    )
    update_job(
        db,
        created["stale"]["id"],
        "attempts = 1, locked_by = 'pool-gone', locked_at = now() - interval '4 hours 1 minute'",
    )
    return {name: job(db, row["id"]) for name, row in created.items()}


def _ids(rows: list[Row]) -> list[int]:
    return sorted(r["id"] for r in rows)


def _targets(selection: dict[str, Row]) -> list[int]:
    return [selection[n]["id"] for n in ("failed", "regular1", "locked", "regular2", "stale")]


def test_complete_jobs_skips_locked_jobs(
    db: psycopg.Connection, listener: Listener, selection: dict[str, Row]
) -> None:
    listener.received(db)
    completed = call(db, "complete_jobs", job_ids=_targets(selection))
    expected = [selection[n]["id"] for n in ("failed", "regular1", "regular2", "stale")]
    assert _ids(completed) == sorted(expected)
    assert jobs(db) == [selection["locked"], selection["untouched"]]
    assert listener.counts(db) == []


def test_permanently_fail_jobs_skips_locked_jobs(
    db: psycopg.Connection, selection: dict[str, Row]
) -> None:
    failed = call(
        db, "permanently_fail_jobs", job_ids=_targets(selection), error_message="TESTING!"
    )
    expected = [selection[n]["id"] for n in ("failed", "regular1", "regular2", "stale")]
    assert _ids(failed) == sorted(expected)
    for row in failed:
        assert row["last_error"] == "TESTING!"
        assert row["attempts"] == row["max_attempts"] > 0
        assert row["updated_at"] == row["txn_now"]
        assert row["is_available"] is False
    assert job(db, selection["locked"]["id"]) == selection["locked"]
    assert job(db, selection["untouched"]["id"]) == selection["untouched"]


def test_permanently_fail_jobs_default_message(
    db: psycopg.Connection, selection: dict[str, Row]
) -> None:
    (row,) = call(db, "permanently_fail_jobs", job_ids=[selection["regular1"]["id"]])
    assert row["last_error"] == "Manually marked as failed"


def test_reschedule_jobs_skips_locked_jobs(
    db: psycopg.Connection, selection: dict[str, Row], future: datetime
) -> None:
    run_at = future + timedelta(minutes=1)
    rescheduled = call(
        db, "reschedule_jobs", job_ids=_targets(selection), run_at=run_at, attempts=1
    )
    expected = [selection[n]["id"] for n in ("failed", "regular1", "regular2", "stale")]
    assert _ids(rescheduled) == sorted(expected)
    for row in rescheduled:
        assert row["attempts"] == 1
        assert row["run_at"] == run_at
        assert row["updated_at"] == row["txn_now"]
    by_id = {row["id"]: row for row in rescheduled}
    assert by_id[selection["failed"]["id"]]["last_error"] == "Failed forever"
    assert by_id[selection["failed"]["id"]]["is_available"] is True  # revived
    assert job(db, selection["locked"]["id"]) == selection["locked"]
    assert job(db, selection["untouched"]["id"]) == selection["untouched"]


def test_reschedule_jobs_changes_only_what_is_given(
    db: psycopg.Connection, selection: dict[str, Row]
) -> None:
    before = selection["regular1"]
    (row,) = call(db, "reschedule_jobs", job_ids=[before["id"]], priority=0, max_attempts=3)
    assert row["priority"] == 0
    assert row["max_attempts"] == 3
    assert row["run_at"] == before["run_at"]
    assert row["attempts"] == before["attempts"]
    (row,) = call(db, "reschedule_jobs", job_ids=[before["id"]], priority=-5)
    assert (row["priority"], row["max_attempts"]) == (-5, 3)


# --- force_unlock_workers -----------------------------------------------------------------


def test_force_unlock_workers(db: psycopg.Connection) -> None:
    """Node's ten-job fixture: jobs locked by pool-1/2/3 or by nobody, some queued."""
    specs: list[tuple[str | None, str | None]] = [
        ("pool-1", None),
        ("pool-1", "test"),
        ("pool-2", None),
        ("pool-2", "test2"),
        ("pool-2", "test3"),
        ("pool-3", None),
        (None, None),
        (None, "test"),
        (None, "test2"),
        (None, "test3"),
    ]
    created: list[Row] = []
    for n, (worker, queue) in enumerate(specs, 1):
        row = add_job(db, "job3", payload={"a": n}, queue_name=queue)
        if worker is not None:
            row = update_job(
                db,
                row["id"],
                f"attempts = 1, locked_by = '{worker}', locked_at = now() - interval '{n} minutes'",
            )
        created.append(job(db, row["id"]))
    # Each queue is locked like its locked job.
    db.execute(
        f"update {S}._private_job_queues as queues"
        "   set locked_at = jobs.locked_at, locked_by = jobs.locked_by"
        f"  from {S}._private_jobs as jobs"
        " where jobs.job_queue_id = queues.id and jobs.locked_by is not null"
    )

    rows = db.execute(f"select {S}.force_unlock_workers(array['pool-2', 'pool-3'])").fetchall()
    assert rows == [(None,)]

    remaining = jobs(db)
    assert [r["id"] for r in remaining] == [r["id"] for r in created]
    for (worker, _), before, after in zip(specs, created, remaining, strict=True):
        if worker == "pool-1":
            assert after == before
        else:
            assert after["locked_by"] is None
            assert after["locked_at"] is None
            # The interrupted attempt still counts; nothing else changes.
            assert without(after, "locked_by", "locked_at", "is_available") == without(
                before, "locked_by", "locked_at", "is_available"
            )
    locked_queues = db.execute(
        f"select queue_name, locked_by from {S}._private_job_queues where locked_at is not null"
    ).fetchall()
    assert locked_queues == [("test", "pool-1")]


# --- the jobs view ------------------------------------------------------------------------


def test_jobs_view_renders_jobs(db: psycopg.Connection, future: datetime) -> None:
    add_job(db, "job1", payload={"a": 1}, queue_name="q", job_key="k", flags=["f"])
    add_job(db, "job2", run_at=future, priority=-1, max_attempts=3)
    locked = add_job(db, "job1")
    update_job(db, locked["id"], "attempts = 1, locked_at = now(), locked_by = 'pool-x'")

    with db.cursor(row_factory=dict_row) as cur:
        cur.execute(f"select * from {S}.jobs order by id")
        view_rows = cur.fetchall()
    expected = [
        {
            "id": row["id"],
            "queue_name": row["queue_name"],
            "task_identifier": row["task_identifier"],
            **without(
                row,
                "id",
                "queue_name",
                "task_identifier",
                "payload",
                "is_available",
                "job_queue_id",
                "task_id",
            ),
        }
        for row in jobs(db)
    ]
    assert view_rows == expected
    assert [list(row) for row in view_rows] == [list(expected[0])] * 3
    assert [row["queue_name"] for row in view_rows] == ["q", None, None]


# --- concurrency --------------------------------------------------------------------------

WRITERS = 4
CALLS_PER_WRITER = 10


def _concurrently(db_url: str, action: Callable[[psycopg.Connection], Row | None]) -> list[Any]:
    """Run ``action`` CALLS_PER_WRITER times on each of WRITERS connections at once."""
    barrier = threading.Barrier(WRITERS)

    def writer() -> list[Any]:
        results = []
        with psycopg.connect(db_url, autocommit=True) as conn:
            barrier.wait(timeout=30)
            for _ in range(CALLS_PER_WRITER):
                results.append(action(conn))
        return results

    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(writer) for _ in range(WRITERS)]
        return [result for future in futures for result in future.result(timeout=90)]


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_add_job_on_one_key(db: psycopg.Connection, db_url: str, mode: str) -> None:
    add_job(db, "job1", queue_name="q")  # register task and queue up front

    def action(conn: psycopg.Connection) -> Row:
        return add_job(conn, "job1", queue_name="q", job_key="shared", job_key_mode=mode)

    results = _concurrently(db_url, action)
    total = WRITERS * CALLS_PER_WRITER
    assert len(results) == total
    assert all(row["id"] is not None for row in results)
    keyed = jobs(db, "jobs.key = 'shared'")
    assert len(keyed) == 1
    assert {row["id"] for row in results} == {keyed[0]["id"]}
    assert keyed[0]["revision"] == total - 1  # no call was lost


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_add_job_while_the_keyed_job_is_locked(
    db: psycopg.Connection, db_url: str, mode: str
) -> None:
    original = add_job(db, "job1", job_key="shared")
    update_job(db, original["id"], "attempts = 1, locked_at = now(), locked_by = 'pool-x'")

    def action(conn: psycopg.Connection) -> Row:
        return add_job(conn, "job1", job_key="shared", job_key_mode=mode)

    results = _concurrently(db_url, action)
    total = WRITERS * CALLS_PER_WRITER
    assert all(row["id"] is not None for row in results)
    keyed = jobs(db, "jobs.key = 'shared'")
    assert len(keyed) == 1
    unlocked = [row for row in keyed if row["locked_at"] is None]
    assert len(unlocked) <= 1
    old = job(db, original["id"])
    if mode == "unsafe_dedupe":
        assert keyed[0]["id"] == original["id"]
        assert keyed[0]["revision"] == total
        assert old["locked_by"] == "pool-x"
    else:
        assert keyed[0]["id"] != original["id"]
        assert keyed[0]["revision"] == total - 1
        assert {row["id"] for row in results} == {keyed[0]["id"]}
        assert old["key"] is None
        assert old["attempts"] == old["max_attempts"]
        assert old["locked_by"] == "pool-x"


# --- identities of the lookup tables (reliability test 20) ---------------------------------


def _last_values(db: psycopg.Connection) -> dict[str, int | None]:
    rows = db.execute(
        "select sequencename, last_value from pg_sequences where schemaname = %s"
        " and sequencename in ('tasks_id_seq', 'job_queues_id_seq')",
        (S,),
    ).fetchall()
    return {name: value for name, value in rows}


def test_repeated_adds_do_not_consume_lookup_identities(
    db: psycopg.Connection, schema_flavour: str
) -> None:
    """Ours skips the names it knows; Node's inserts them again and lets the conflict drop
    the row, which consumes one identity value per add (the ids run out after about two
    billion adds of known names)."""
    db.execute(f"select {S}.add_job('same_task', queue_name := 'same_queue')")
    before = _last_values(db)
    db.execute(
        f"select {S}.add_job('same_task', queue_name := 'same_queue') from generate_series(1, 5000)"
    )
    db.execute(
        f"select {S}.add_jobs(array_agg(row('same_task', null, 'same_queue', null, null, null,"
        f" null, null)::{S}.job_spec)) from generate_series(1, 5000)"
    )
    db.execute(
        f"select {S}.add_job('same_task', queue_name := 'same_queue', job_key := 'k' || n,"
        " job_key_mode := 'unsafe_dedupe') from generate_series(1, 1000) as n"
    )
    after = _last_values(db)
    jobs = db.execute(f"select count(*) from {S}._private_jobs").fetchone()
    assert jobs is not None
    assert jobs[0] == 11001
    assert before == {"tasks_id_seq": 1, "job_queues_id_seq": 1}
    if schema_flavour != "node":  # the rust flavour keeps our lookups (tests/_rust_schema.py)
        assert after == before
    else:
        # One value per call of add_job, in every mode, and of add_jobs (the one call with
        # 5000 specs inserts each distinct name once): 5000 + 1 + 1000 after the first.
        assert after == {"tasks_id_seq": 6002, "job_queues_id_seq": 6002}
