"""Workers register in ``_private_workers``, refresh their heartbeat, deregister on a clean
stop, survive heartbeats that cannot be written, and run without the registry on a schema
at revision 19."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import psycopg
import pytest

from sqlalchemy_graphile import HeartbeatEvent, __version__
from tests.integration._worker_support import (
    Gated,
    Job2,
    Job3,
    Recorder,
    add,
    eventually,
    logged,
    make_worker,
    rows,
)

S = "graphile_worker"


def registered(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return rows(db, f"select id, metadata from {S}._private_workers order by id")


async def test_a_worker_registers_refreshes_and_deregisters(
    db_url: str, db: psycopg.Connection
) -> None:
    events, log = logged()
    worker = make_worker(
        db_url, Job3, Job2, events=events, heartbeat_interval=0.05, sweep_threshold=1.0
    )
    async with worker:
        ((worker_id, metadata),) = registered(db)
        assert worker_id == worker.pool_id
        assert metadata["hostname"] == socket.gethostname()
        assert metadata["pid"] == os.getpid()
        assert metadata["version"] == __version__
        assert metadata["concurrency"] == 1
        assert metadata["tasks"] == ["job2", "job3"]
        assert "process_started_at" in metadata
        first = rows(db, f"select last_heartbeat_at from {S}._private_workers")
        await log.wait_for("worker:heartbeat", 2)
        assert rows(db, f"select last_heartbeat_at from {S}._private_workers") > first
        assert registered(db)[0][1] == metadata  # refreshes keep the metadata
    assert registered(db) == []


async def test_run_once_registers_while_it_runs(db_url: str, db: psycopg.Connection) -> None:
    rec = Recorder()
    add(db, "gated")
    seen: list[list[tuple[Any, ...]]] = []

    async def open_gate() -> None:
        await rec.started.wait()
        seen.append(registered(db))
        rec.gate.set()

    opener = asyncio.create_task(open_gate())
    worker = make_worker(db_url, Gated, rec=rec)
    await worker.run_once()
    await opener
    ((worker_id, _),) = seen[0]
    assert worker_id.startswith("sgotpool-")
    assert registered(db) == []


async def test_a_heartbeat_that_cannot_be_written_is_retried_and_jobs_keep_running(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    events, log = logged()
    rec = Recorder()
    worker = make_worker(
        db_url, Gated, rec=rec, events=events, heartbeat_interval=0.05, sweep_threshold=1.0
    )
    with caplog.at_level(logging.INFO, logger="sqlalchemy_graphile.worker"):
        async with worker:
            db.execute(f"alter function {S}.worker_heartbeat(text, json) rename to hidden")
            add(db, "gated")
            error = await log.wait_for("worker:heartbeat:error", 2)
            assert isinstance(error, HeartbeatEvent)
            assert error.failures == 2
            assert isinstance(error.error, Exception)
            await rec.started.wait()
            db.execute(f"alter function {S}.hidden(text, json) rename to worker_heartbeat")
            beats = log.count("worker:heartbeat")
            await log.wait_for("worker:heartbeat", beats + 1)
            rec.gate.set()
            await eventually(lambda: rows(db, f"select count(*) from {S}._private_jobs") == [(0,)])
    assert "could not write its heartbeat" in caplog.text
    assert "heartbeat written again after" in caplog.text
    assert registered(db) == []


async def test_without_revision_20_the_worker_warns_and_runs(
    db_url: str, db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    db.execute(f"drop table {S}._private_workers")
    add(db, "job2")
    rec = Recorder()
    with caplog.at_level(logging.WARNING, logger="sqlalchemy_graphile.worker"):
        await make_worker(db_url, Job2, rec=rec).run_once()
    assert rec.seen("job2") == [{}]
    assert "has no worker registry (revision 20)" in caplog.text


async def test_heartbeat_interval_none_registers_nothing(
    db_url: str, db: psycopg.Connection
) -> None:
    async with make_worker(db_url, Job2, heartbeat_interval=None):
        assert registered(db) == []
