"""The dashboard's actions change jobs through the schema's admin functions, with a
confirmation step in the pages, and say what they did and skipped."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from sqlalchemy_graphile.dashboard import DashboardApp, dashboard_app
from sqlalchemy_graphile.dashboard import _actions as actions_module

from .._dashboard_support import add_job, client, fail, lock, seed_states


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[DashboardApp]:
    made = dashboard_app(db_url, sample_interval=3600)
    yield made
    await made.close()


@pytest.fixture
async def http(app: DashboardApp) -> AsyncIterator[httpx.AsyncClient]:
    async with client(app) as made:
        yield made


async def _csrf(http: httpx.AsyncClient) -> str:
    token: str = (await http.get("/api/session")).json()["csrf_token"]
    return token


async def _act(http: httpx.AsyncClient, action: str, status: int = 200, **body: Any) -> Any:
    response = await http.post(
        f"/api/actions/{action}", json=body, headers={"X-CSRF-Token": await _csrf(http)}
    )
    assert response.status_code == status, response.text
    return response.json()


def _job(db: psycopg.Connection, job_id: int) -> dict[str, Any] | None:
    row = db.execute(
        "select attempts, max_attempts, run_at, priority, last_error, key, locked_by "
        "from graphile_worker._private_jobs where id = %s",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    names = ("attempts", "max_attempts", "run_at", "priority", "last_error", "key", "locked_by")
    return dict(zip(names, row, strict=True))


def _now(db: psycopg.Connection) -> datetime:
    row = db.execute("select now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


async def test_retry_resets_attempts_and_runs_now(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    job_id = add_job(db, "flaky", max_attempts=3, run_at="2999-01-01T00:00:00Z")
    fail(db, job_id, "ValueError: nope")
    result = await _act(http, "retry", ids=[job_id])
    assert result["done"] == [job_id]
    assert result["skipped"] == []
    assert "attempts reset to 0" in result["message"]
    job = _job(db, job_id)
    assert job is not None
    assert job["attempts"] == 0
    assert job["run_at"] <= _now(db)
    assert job["last_error"] == "ValueError: nope"  # reschedule_jobs keeps it


async def test_run_now_reschedule_fail_and_complete(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    later = add_job(db, "later", run_at="2999-01-01T00:00:00Z")
    assert (await _act(http, "run-now", ids=[later]))["done"] == [later]
    job = _job(db, later)
    assert job is not None
    assert job["run_at"] <= _now(db)

    result = await _act(
        http, "reschedule", ids=[later], run_at="2031-02-03T04:05:06+00:00", priority=-3
    )
    assert "to run at 2031-02-03 04:05:06 UTC and with priority -3" in result["message"]
    job = _job(db, later)
    assert job is not None
    assert job["run_at"] == datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert job["priority"] == -3

    assert (await _act(http, "fail", ids=[later], reason="not needed"))["done"] == [later]
    job = _job(db, later)
    assert job is not None
    assert job["attempts"] == job["max_attempts"]
    assert job["last_error"] == "not needed"

    assert (await _act(http, "complete", ids=[later]))["done"] == [later]
    assert _job(db, later) is None


async def test_locked_jobs_are_skipped_and_reported(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    free = add_job(db, "a")
    held = add_job(db, "a")
    lock(db, held, "worker-x")
    result = await _act(http, "complete", ids=[free, held])
    assert result["done"] == [free]
    assert result["skipped"] == [held]
    assert f"that a worker holds or that no longer exist: {held}" in result["message"]
    only_held = await _act(http, "complete", status=409, ids=[held])
    assert only_held["ok"] is False


async def test_remove_by_key(http: httpx.AsyncClient, db: psycopg.Connection) -> None:
    free = add_job(db, "a", job_key="k-free")
    running = add_job(db, "a", job_key="k-running")
    lock(db, running, "worker-x")
    assert (await _act(http, "remove-by-key", key="k-free"))["done"] == [free]
    assert _job(db, free) is None
    result = await _act(http, "remove-by-key", key="k-running")
    assert "lost its key" in result["message"]
    job = _job(db, running)
    assert job is not None
    assert job["key"] is None
    missing = await _act(http, "remove-by-key", status=409, key="k-none")
    assert "No job has the key" in missing["message"]


async def test_force_unlock_a_worker(http: httpx.AsyncClient, db: psycopg.Connection) -> None:
    ids = seed_states(db)
    result = await _act(http, "force-unlock", worker_ids=["worker-a"])
    assert "1 job and 1 queue were locked" in result["message"]
    job = _job(db, ids["locked"][0])
    assert job is not None
    assert job["locked_by"] is None
    row = db.execute(
        "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
    ).fetchone()
    assert row == (0,)


async def test_bulk_action_on_a_filter_leaves_later_jobs_alone(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    failed = []
    for n in range(5):
        job_id = add_job(db, "bulk", payload=f'{{"n": {n}}}')
        fail(db, job_id)
        failed.append(job_id)
    add_job(db, "bulk")  # not failed: not matched
    confirmed = await http.get(
        "/confirm", params={"action": "retry", "select": "filter", "state": "failed"}
    )
    assert 'data-target-count="5"' in confirmed.text
    max_id = int(re.findall(r'name="max_id" value="(\d+)"', confirmed.text)[0])
    late = add_job(db, "bulk")  # added after the confirmation
    fail(db, late)
    result = await _act(http, "retry", filter={"state": "failed", "task": "bulk"}, max_id=max_id)
    assert result["done"] == failed
    late_job = _job(db, late)
    assert late_job is not None
    assert late_job["attempts"] == late_job["max_attempts"]


async def test_bulk_actions_stop_at_the_limit(
    http: httpx.AsyncClient, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions_module, "BULK_LIMIT", 3)
    monkeypatch.setattr(actions_module, "BATCH_SIZE", 2)
    ids = [add_job(db, "many", run_at="2999-01-01T00:00:00Z") for _ in range(5)]
    result = await _act(http, "run-now", filter={"task": "many"})
    assert result["done"] == ids[:3]
    assert result["more"] is True
    again = await _act(http, "run-now", filter={"task": "many", "state": "scheduled"})
    assert again["done"] == ids[3:]
    assert again["more"] is False


async def test_bad_actions_are_400_before_any_change(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    job_id = add_job(db, "a")
    for action, body in (
        ("explode", {"ids": [job_id]}),
        ("retry", {}),
        ("retry", {"ids": [job_id], "filter": {}}),
        ("retry", {"ids": ["one"]}),
        ("retry", {"ids": [0]}),
        ("retry", {"ids": [2**63]}),
        ("reschedule", {"ids": [job_id]}),
        ("reschedule", {"ids": [job_id], "run_at": "2030-01-01T00:00:00"}),
        ("reschedule", {"ids": [job_id], "run_at": "tomorrow"}),
        ("reschedule", {"ids": [job_id], "priority": 40000}),
        ("fail", {"ids": [job_id], "reason": "nul\x00"}),
        ("remove-by-key", {}),
        ("force-unlock", {"worker_ids": []}),
        ("retry", {"filter": {"state": "weird"}}),
    ):
        result = await _act(http, action, status=400, **body)
        assert result["error"], (action, body)
    assert _job(db, job_id) is not None


async def test_html_confirmation_then_action(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    job_id = add_job(db, "flaky", max_attempts=2)
    fail(db, job_id, "boom")
    page = (await http.get(f"/jobs/{job_id}")).text
    assert f"/confirm?action=retry&amp;id={job_id}" in page
    confirm = await http.get("/confirm", params={"action": "retry", "id": str(job_id)})
    assert confirm.status_code == 200
    assert 'action="/actions/retry"' in confirm.text
    job = _job(db, job_id)
    assert job is not None
    assert job["attempts"] == 2  # confirming changes nothing
    token = re.findall(r'name="csrf_token" value="([0-9a-f]+)"', confirm.text)[0]
    done = await http.post(
        "/actions/retry",
        data={"csrf_token": token, "id": str(job_id)},
    )
    assert done.status_code == 200, done.text
    assert "Retried 1 job" in done.text
    job = _job(db, job_id)
    assert job is not None
    assert job["attempts"] == 0


async def test_html_reschedule_reads_a_datetime_local_value_as_utc(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    job_id = add_job(db, "a")
    confirm = await http.get("/confirm", params={"action": "reschedule", "id": str(job_id)})
    token = re.findall(r'name="csrf_token" value="([0-9a-f]+)"', confirm.text)[0]
    done = await http.post(
        "/actions/reschedule",
        data={"csrf_token": token, "id": str(job_id), "run_at": "2032-05-06T07:08", "priority": ""},
    )
    assert done.status_code == 200, done.text
    job = _job(db, job_id)
    assert job is not None
    assert job["run_at"] == datetime(2032, 5, 6, 7, 8, tzinfo=UTC)


async def test_html_bulk_form_reaches_a_confirmation(
    http: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    ids = [add_job(db, "picked") for _ in range(3)]
    confirm = await http.get(
        "/confirm",
        params=[
            ("action", "complete"),
            ("select", "ids"),
            ("id", str(ids[0])),
            ("id", str(ids[2])),
        ],
    )
    assert confirm.status_code == 200
    assert 'data-target-count="2"' in confirm.text
    nothing = await http.get("/confirm", params={"action": "complete", "select": "ids"})
    assert nothing.status_code == 400
    assert "no jobs chosen" in nothing.text
