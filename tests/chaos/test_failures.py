"""Stored payloads that do not fit, and the failure backoff on the database clock
(reliability test 10)."""

from __future__ import annotations

import json
import math
import signal
from datetime import datetime, timedelta

import pytest

from sqlalchemy_graphile import JobSpec

from . import _ledger as ledger
from ._tasks import Fail
from ._workers import Workers, wait_for
from .conftest import ChaosDatabase

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

INVALID_PAYLOADS = {
    "wrong type": ("chaos_typed", {"count": "many", "name": "a"}),
    "array, not object": ("chaos_typed", [1, 2]),
    "missing field": ("chaos_typed", {"count": 1}),
    "batch given an object": ("chaos_items", {"n": 1}),
    "batch item of the wrong type": ("chaos_items", [{"n": 1}, {"n": "x"}]),
}

#: Rounding of ``interval`` arithmetic and of timestamps to microseconds.
SLACK = timedelta(milliseconds=1)


def test_invalid_payloads_fail_for_good_at_the_first_attempt(
    chaos_db: ChaosDatabase, workers: Workers
) -> None:
    with chaos_db.connect() as db:
        ids = {
            case: db.execute(
                "select id from graphile_worker.add_job(%s, %s::json)",
                (identifier, json.dumps(payload)),
            ).fetchone()[0]  # type: ignore[index]
            for case, (identifier, payload) in INVALID_PAYLOADS.items()
        }
        worker = workers.start("payloads")

        def failed() -> bool:
            (count,) = db.execute(
                "select count(*) from graphile_worker._private_jobs"
                " where id = any(%s) and attempts >= max_attempts and locked_by is null",
                (list(ids.values()),),
            ).fetchone()  # type: ignore[misc]
            return int(count) == len(ids)

        wait_for(failed, "every invalid payload to be failed")
        rows = db.execute(
            "select id, attempts, max_attempts, last_error from graphile_worker._private_jobs"
        ).fetchall()
        assert ledger.starts(db) == {}  # no task ever ran
    assert worker.alive
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0

    by_id = {row[0]: row[1:] for row in rows}
    log = worker.log()
    for case, job_id in ids.items():
        attempts, max_attempts, last_error = by_id[job_id]
        assert attempts == max_attempts == 25, case
        assert last_error.startswith("PayloadValidationError: "), (case, last_error)
        # Failed once, at its first attempt: no tight loop of retries.
        assert log.count(f"job {job_id} (") == 1, case
        assert "attempt 1 of 25; no attempts left" in log


def test_a_failing_task_backs_off_on_the_database_clock(
    chaos_db: ChaosDatabase, workers: Workers
) -> None:
    (job_id,) = chaos_db.add_jobs([(Fail(), JobSpec(max_attempts=3))])
    workers.start("backoff")
    previous_run_at: datetime | None = None
    with chaos_db.connect() as db:
        for attempt in (1, 2, 3):

            def failed(attempt: int = attempt) -> tuple[datetime, datetime, datetime, str] | None:
                # run_at minus the backoff is when the failure was written (DB now()).
                return db.execute(
                    "select run_at, run_at - exp(least(attempts, 10)) * interval '1 second',"
                    "       clock_timestamp(), last_error"
                    " from graphile_worker._private_jobs"
                    " where id = %s and attempts = %s and locked_by is null",
                    (job_id, attempt),
                ).fetchone()

            run_at, written_at, seen_at, last_error = wait_for(
                failed, f"attempt {attempt} to fail", within=20
            )
            (started_at,) = db.execute(
                "select at from chaos.ledger where job_id = %s and attempt = %s",
                (job_id, attempt),
            ).fetchone()  # type: ignore[misc]
            assert last_error == "RuntimeError: this task always fails"
            # The new run_at is the failure's now() plus e^min(attempts, 10) seconds ...
            assert started_at - SLACK <= written_at <= seen_at + SLACK
            # ... and never earlier than the old run_at plus that backoff.
            if previous_run_at is not None:
                backoff = timedelta(seconds=math.exp(min(attempt, 10)))
                assert run_at >= previous_run_at + backoff - SLACK
            previous_run_at = run_at
        assert ledger.attempts_started(db, job_id) == [1, 2, 3]
        assert ledger.no_loss(db, [job_id]) == []  # permanently failed counts as not lost
