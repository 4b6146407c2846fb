"""The revision-20 functions do what the Rust port's do: heartbeat upsert, deregister, stale
and orphan listing, recovery of a dead worker's jobs and queues, deletion of its row."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from tests.integration._worker_support import add, jobs, rows

S = "graphile_worker"
DEAD = "sgpool-00000000000000dead"
ALIVE = "sgpool-0000000000000a11ve"


def lock(db: psycopg.Connection, job_id: int, owner: str, age: str = "0 seconds") -> None:
    db.execute(
        f"update {S}._private_jobs set locked_by = %s, locked_at = now() - %s::interval,"
        " attempts = attempts + 1 where id = %s",
        (owner, age, job_id),
    )
    db.execute(
        f"update {S}._private_job_queues set locked_by = %s, locked_at = now() - %s::interval"
        f" where id = (select job_queue_id from {S}._private_jobs where id = %s)",
        (owner, age, job_id),
    )


def test_heartbeat_registers_refreshes_and_keeps_metadata(db: psycopg.Connection) -> None:
    db.execute(f"""select {S}.worker_heartbeat(%s, '{{"pid": 1}}')""", (ALIVE,))
    db.execute(f"update {S}._private_workers set last_heartbeat_at = now() - interval '1 hour'")
    db.execute(f"select {S}.worker_heartbeat(%s)", (ALIVE,))
    ((age, metadata),) = rows(
        db,
        f"select now() - last_heartbeat_at < interval '1 minute', metadata"
        f" from {S}._private_workers",
    )
    assert (age, metadata) == (True, {"pid": 1})
    db.execute(f"""select {S}.worker_heartbeat(%s, '{{"pid": 2}}')""", (ALIVE,))
    assert rows(db, f"select metadata from {S}._private_workers") == [({"pid": 2},)]
    db.execute(f"select {S}.worker_deregister(%s)", (ALIVE,))
    assert rows(db, f"select count(*) from {S}._private_workers") == [(0,)]


def test_stale_and_orphan_listing(db: psycopg.Connection) -> None:
    db.execute(f"select {S}.worker_heartbeat(%s)", (ALIVE,))
    db.execute(f"select {S}.worker_heartbeat(%s)", (DEAD,))
    db.execute(
        f"update {S}._private_workers set last_heartbeat_at = now() - interval '10 minutes'"
        " where id = %s",
        (DEAD,),
    )
    assert rows(db, f"select * from {S}.list_stale_workers(interval '5 minutes')") == [(DEAD,)]
    old, recent = add(db, "a", queue_name="q"), add(db, "b")
    lock(db, old, "pool-node-unregistered", "10 minutes")
    lock(db, recent, "pool-node-recent")
    assert rows(db, f"select * from {S}.list_orphan_locked_workers(interval '5 minutes')") == [
        ("pool-node-unregistered",)
    ]


def test_recover_dead_worker_jobs_refunds_the_attempt_and_unlocks_the_queue(
    db: psycopg.Connection,
) -> None:
    queued, plain, other = add(db, "a", queue_name="q"), add(db, "b"), add(db, "c")
    lock(db, queued, DEAD)
    lock(db, plain, DEAD)
    lock(db, other, ALIVE)
    ((count, now),) = rows(
        db,
        f"select {S}.recover_dead_worker_jobs(array[%s], interval '30 seconds'), now()",
        DEAD,
    )
    assert count == 2
    by_id = {job["id"]: job for job in jobs(db)}
    for job_id in (queued, plain):
        job = by_id[job_id]
        assert (job["attempts"], job["locked_by"], job["locked_at"]) == (0, None, None)
        assert job["last_error"] == "Job recovered after worker interruption"
        assert job["run_at"] >= now + timedelta(seconds=30)
    assert by_id[other]["locked_by"] == ALIVE
    assert rows(db, f"select locked_by from {S}._private_job_queues") == [(None,)]
    assert rows(db, f"select {S}.recover_dead_worker_jobs(array[%s])", DEAD) == [(0,)]


def test_delete_stale_workers(db: psycopg.Connection) -> None:
    for worker in (ALIVE, DEAD):
        db.execute(f"select {S}.worker_heartbeat(%s)", (worker,))
    db.execute(f"select {S}.delete_stale_workers(array[%s])", (DEAD,))
    assert rows(db, f"select id from {S}._private_workers") == [(ALIVE,)]
