"""The dashboard's pages and JSON API read the database right: counts, filters, search,
keyset pages, job details, queues, cron items and workers, on any schema name."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest

from sqlalchemy_graphile import CronItem, WorkerUtils
from sqlalchemy_graphile.dashboard import DashboardApp, dashboard_app
from sqlalchemy_graphile.dashboard import _queries as queries_module

from .._dashboard_support import (
    STATES,
    add_job,
    client,
    db_counts,
    escaped,
    fail,
    lock,
    seed_states,
)
from ._worker_support import eventually


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[DashboardApp]:
    made = dashboard_app(db_url, sample_interval=3600)
    yield made
    await made.close()


async def _get_json(app: DashboardApp, path: str, status: int = 200) -> Any:
    async with client(app) as http:
        response = await http.get(path)
    assert response.status_code == status, response.text
    return response.json()


async def _get_html(app: DashboardApp, path: str, status: int = 200) -> str:
    async with client(app) as http:
        response = await http.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


async def test_overview_counts_match_the_database(
    app: DashboardApp, db: psycopg.Connection
) -> None:
    seed_states(db)
    overview = await _get_json(app, "/api/overview")
    expected = db_counts(db)
    assert {state: overview["total"][state] for state in STATES} == expected
    by_task = {row["name"]: row for row in overview["by_task"]}
    assert by_task["send_email"]["ready"] == 3
    assert by_task["send_email"]["locked"] == 1
    assert by_task["resize_image"]["failed"] == 2
    assert by_task["resize_image"]["scheduled"] == 2
    by_queue = {row["name"]: row for row in overview["by_queue"]}
    assert by_queue["mail"]["ready"] == 3
    assert by_queue["reports"]["locked"] == 1
    assert by_queue[None]["ready"] == 1  # jobs in no named queue
    assert overview["oldest_ready_age_seconds"] >= 0
    page = await _get_html(app, "/")
    for state, count in expected.items():
        assert f'data-count="{state}" data-value="{count}"' in page


async def test_overview_of_an_empty_queue(app: DashboardApp) -> None:
    overview = await _get_json(app, "/api/overview")
    assert overview["total"]["ready"] == 0
    assert overview["oldest_ready_age_seconds"] is None
    assert overview["by_task"] == []
    assert "Collecting samples" in await _get_html(app, "/")


async def test_state_task_and_queue_filters(app: DashboardApp, db: psycopg.Connection) -> None:
    ids = seed_states(db)
    for state in STATES:
        listed = await _get_json(app, f"/api/jobs?state={state}")
        assert sorted(job["id"] for job in listed["jobs"]) == sorted(ids[state])
        assert {job["state"] for job in listed["jobs"]} == {state}
    mail = await _get_json(app, "/api/jobs?queue=mail")
    assert len(mail["jobs"]) == 3
    assert {job["queue_name"] for job in mail["jobs"]} == {"mail"}
    failed_resize = await _get_json(app, "/api/jobs?state=failed&task=resize_image")
    assert sorted(job["id"] for job in failed_resize["jobs"]) == sorted(ids["failed"])
    assert (await _get_json(app, "/api/jobs?task=no_such_task"))["jobs"] == []


async def test_search_covers_every_text_column(app: DashboardApp, db: psycopg.Connection) -> None:
    by_payload = add_job(db, "a", payload='{"email": "Ada@Example.com"}')
    by_key = add_job(db, "b", job_key="invoice-7731")
    by_error = add_job(db, "c")
    fail(db, by_error, "TimeoutError: smtp.example.net did not answer")
    by_worker = add_job(db, "d")
    lock(db, by_worker, "pool-77aa")
    by_task = add_job(db, "export_ledger")
    by_queue = add_job(db, "e", queue_name="nightly-billing")

    async def found(term: str) -> list[int]:
        async with client(app) as http:
            response = await http.get("/api/jobs", params={"q": term})
        assert response.status_code == 200, response.text
        return sorted(job["id"] for job in response.json()["jobs"])

    assert await found("ada@example") == [by_payload]  # case-insensitive
    assert await found("7731") == [by_key]
    assert await found("SMTP.EXAMPLE") == [by_error]
    assert await found("77aa") == [by_worker]
    assert await found("ledger") == [by_task]
    assert await found("billing") == [by_queue]
    assert by_error in await found(str(by_error))  # by id (other text may hold the digits)
    assert await found("no such text anywhere") == []


async def test_search_wildcards_are_literal(app: DashboardApp, db: psycopg.Connection) -> None:
    percent = add_job(db, "a", payload='{"discount": "50%"}')
    underscore = add_job(db, "a", payload='{"name": "a_b"}')
    add_job(db, "a", payload='{"name": "axb", "discount": "500"}')
    for term, expected in (("50%", [percent]), ("a_b", [underscore]), ("\\", [])):
        listed = await _get_json(app, "/api/jobs?" + _query(q=term))
        assert [job["id"] for job in listed["jobs"]] == expected, term


def _query(**params: str) -> str:
    return urlencode(params)


@pytest.mark.parametrize("state", ["all", "ready", "failed"])
async def test_keyset_pages_cover_every_job_once(
    app: DashboardApp, db: psycopg.Connection, state: str
) -> None:
    failed: list[int] = []
    live: list[int] = []
    for n in range(23):
        job_id = add_job(db, "paged", priority=n % 3, run_at="2001-01-01T00:00:00Z")
        if n % 4 == 0:
            fail(db, job_id)
            failed.append(job_id)
        else:
            live.append(job_id)
    expected = {"all": failed + live, "ready": live, "failed": failed}[state]
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        listed = await _get_json(app, "/api/jobs?" + _query(state=state, limit="5", cursor=cursor))
        seen += [job["id"] for job in listed["jobs"]]
        pages += 1
        if listed["next_cursor"] is None:
            break
        cursor = listed["next_cursor"]
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))
    assert pages == -(-len(expected) // 5)  # no empty last page
    if state == "ready":
        rows = await _get_json(app, "/api/jobs?state=ready&limit=500")
        keys = [(job["priority"], job["run_at"], job["id"]) for job in rows["jobs"]]
        assert keys == sorted(keys)  # run order
    else:
        assert seen == sorted(seen, reverse=True)  # newest first


@pytest.mark.parametrize("window", [3, 8, 20_000])
async def test_search_pages_are_right_with_or_without_the_window(
    app: DashboardApp, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    monkeypatch.setattr(queries_module, "SEARCH_WINDOW", window)
    expected = []
    for n in range(30):
        needle = n % 3 != 0 or n > 25
        job_id = add_job(db, "hay", payload=json.dumps({"text": "needle" if needle else "straw"}))
        if needle:
            expected.append(job_id)
    seen: list[int] = []
    cursor = ""
    while True:
        listed = await _get_json(app, "/api/jobs?" + _query(q="NEEDLE", limit="5", cursor=cursor))
        seen += [job["id"] for job in listed["jobs"]]
        if listed["next_cursor"] is None:
            break
        cursor = listed["next_cursor"]
    assert seen == sorted(expected, reverse=True)


async def test_bad_list_parameters_are_400(app: DashboardApp) -> None:
    for query in (
        "state=bogus",
        "limit=0",
        "limit=501",
        "limit=ten",
        "cursor=nonsense",
        "state=ready&cursor=i5",  # a newest-first cursor on a run-order list
        "state=all&cursor=r1.2.3",
        "q=" + "x" * 513,
        "task=a%00b",
    ):
        body = await _get_json(app, f"/api/jobs?{query}", status=400)
        assert body["error"], query
    page = await _get_html(app, "/jobs?state=bogus", status=400)
    assert "state must be one of" in page


async def test_job_detail(app: DashboardApp, db: psycopg.Connection) -> None:
    job_id = add_job(
        db,
        "send_email",
        payload='{"to": "zoë@example.com", "tags": ["a", "b"]}',
        queue_name="mail",
        job_key="welcome-zoë",
        flags=["slow", "eu"],
    )
    lock(db, job_id, "pool-1234")
    job = await _get_json(app, f"/api/jobs/{job_id}")
    assert job["payload"] == {"to": "zoë@example.com", "tags": ["a", "b"]}
    assert job["flags"] == {"slow": True, "eu": True}
    assert job["state"] == "locked"
    assert job["locked_by"] == job["queue_locked_by"] == "pool-1234"
    page = await _get_html(app, f"/jobs/{job_id}")
    assert escaped('  "to": "zoë@example.com",\n  "tags": [') in page  # pretty-printed
    assert "welcome-zoë" in page
    assert "eu, slow" in page
    assert "pool-1234" in page
    assert (await _get_json(app, "/api/jobs/987654", status=404))["error"]
    assert "There is no job 987654" in await _get_html(app, "/jobs/987654", status=404)


async def test_queues_page_shows_who_holds_the_lock(
    app: DashboardApp, db: psycopg.Connection
) -> None:
    seed_states(db)
    queues = await _get_json(app, "/api/queues")
    by_name = {q["queue_name"]: q for q in queues["queues"]}
    assert queues["total"] == 2
    assert by_name["reports"]["locked_by"] == "worker-a"
    assert by_name["reports"]["locked_at"] is not None
    assert by_name["mail"]["locked_by"] is None
    assert by_name["mail"]["ready"] == 3
    assert queues["queues"][0]["queue_name"] == "reports"  # locked first
    page = await _get_html(app, "/queues")
    assert 'data-queue="reports"' in page
    assert "worker-a" in page


async def test_cron_page_joins_the_crontab_with_the_database(
    db_url: str, db: psycopg.Connection
) -> None:
    db.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since, "
        "last_execution) values ('nightly', now() - interval '2 days', now() - interval '1 hour'),"
        " ('orphan', now(), null)"
    )
    crontab = [
        CronItem("send_digest", "30 4 * * *", identifier="nightly"),
        CronItem("tick", "* * * * *"),
    ]
    app = dashboard_app(db_url, crontab=crontab, sample_interval=3600)
    try:
        cron = await _get_json(app, "/api/cron")
    finally:
        await app.close()
    items = {item["identifier"]: item for item in cron["items"]}
    assert set(items) == {"nightly", "orphan", "tick"}
    nightly = items["nightly"]
    assert nightly["pattern"] == "30 4 * * *"
    assert nightly["in_database"]
    assert nightly["in_crontab"]
    next_run = datetime.fromisoformat(nightly["next_run"])
    assert (next_run.hour, next_run.minute) == (4, 30)
    assert next_run > datetime.fromisoformat(cron["db_now"])
    assert items["orphan"]["pattern"] is None
    assert not items["orphan"]["in_crontab"]
    assert items["tick"]["last_execution"] is None
    assert not items["tick"]["in_database"]


async def test_cron_page_without_a_crontab(app: DashboardApp, db: psycopg.Connection) -> None:
    db.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since) "
        "values ('nightly', now())"
    )
    page = await _get_html(app, "/cron")
    assert 'data-cron="nightly"' in page
    assert "Give the dashboard your crontab" in page


async def test_workers_without_heartbeats(app: DashboardApp, db: psycopg.Connection) -> None:
    # A schema at revision 19 (Node installed it, and nobody added revision 20).
    db.execute("drop table graphile_worker._private_workers")
    seed_states(db)
    workers = await _get_json(app, "/api/workers")
    assert workers["heartbeats_installed"] is False
    assert [(w["worker_id"], w["jobs"], w["queues"]) for w in workers["workers"]] == [
        ("worker-a", 1, 1)
    ]
    page = await _get_html(app, "/workers")
    assert "Heartbeats are not installed" in page


async def test_workers_with_heartbeats(app: DashboardApp, db: psycopg.Connection) -> None:
    db.execute(
        "insert into graphile_worker._private_workers values "
        "('worker-a', now() - interval '5 seconds', now() - interval '1 hour', "
        """'{"hostname": "web-1", "pid": 4242}'), """
        "('worker-idle', now(), now(), null)"
    )
    seed_states(db)
    workers = await _get_json(app, "/api/workers")
    assert workers["heartbeats_installed"] is True
    rows = {w["worker_id"]: w for w in workers["workers"]}
    assert rows["worker-a"]["host"] == "web-1"
    assert rows["worker-a"]["pid"] == "4242"
    assert rows["worker-a"]["jobs"] == 1
    assert rows["worker-a"]["registered"] is True
    assert rows["worker-idle"]["jobs"] == 0
    page = await _get_html(app, "/workers")
    assert "Heartbeats are not installed" not in page
    assert "web-1" in page


async def test_any_valid_schema_name(
    empty_db_url: str, postgresql_empty: psycopg.Connection
) -> None:
    schema = "Jobs$Q"
    async with WorkerUtils(empty_db_url, schema=schema) as utils:
        await utils.migrate()
    postgresql_empty.autocommit = True
    job_id = add_job(postgresql_empty, "in_odd_schema", schema=schema, payload='{"x": 1}')
    fail(postgresql_empty, job_id, schema=schema)
    app = dashboard_app(empty_db_url, schema=schema, sample_interval=3600)
    try:
        listed = await _get_json(app, "/api/jobs?state=failed")
        overview = await _get_json(app, "/api/overview")
        session = await _get_json(app, "/api/session")
        page = await _get_html(app, f"/jobs/{job_id}")
    finally:
        await app.close()
    assert [job["id"] for job in listed["jobs"]] == [job_id]
    assert overview["total"]["failed"] == 1
    assert session["schema"] == schema
    assert "in_odd_schema" in page


async def test_schema_not_installed_is_a_clear_503(empty_db_url: str) -> None:
    app = dashboard_app(empty_db_url, sample_interval=3600)
    try:
        page = await _get_html(app, "/", status=503)
        body = await _get_json(app, "/api/jobs", status=503)
        async with client(app) as http:
            token = (await http.get("/api/session")).json()["csrf_token"]
            action = await http.post(
                "/api/actions/complete", json={"ids": [1]}, headers={"X-CSRF-Token": token}
            )
    finally:
        await app.close()
    assert "is not installed" in page
    assert "sqlalchemy-graphile migrate" in body["error"]
    assert action.status_code == 503
    assert "is not installed" in action.json()["error"]


async def test_unreachable_database_is_a_clear_503(unused_tcp_port: int) -> None:
    app = dashboard_app(
        f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/x", sample_interval=3600
    )
    try:
        body = await _get_json(app, "/api/overview", status=503)
    finally:
        await app.close()
    assert body["error"].startswith("Cannot reach the database")


async def test_unknown_paths_are_404_pages(app: DashboardApp) -> None:
    assert "no such page" in await _get_html(app, "/no/such/page", status=404)
    assert (await _get_json(app, "/api/nothing", status=404))["error"]


async def test_throughput_counts_completed_jobs(app: DashboardApp, db_url: str) -> None:
    sampler = app._core.sampler  # internal: the test takes the samples itself
    await sampler.run_once()
    async with WorkerUtils(db_url) as utils:
        jobs = [await utils.add_raw_job("counted", {}) for _ in range(5)]
        await utils.complete_jobs([job.id for job in jobs])
    # PostgreSQL publishes a backend's counters when it goes idle or exits (the utils'
    # connections closed above), so the next samples see them.

    async def completed() -> float:
        sample = await sampler.run_once()
        return sum(rate.completed or 0 for rate in sampler.per_minute(sample.db_now))

    assert round(await eventually(lambda: _at_least(completed, 5))) == 5
    last = sampler.samples[-1]
    assert round(sum(rate.added or 0 for rate in sampler.per_minute(last.db_now))) == 5
    overview = await _get_json(app, "/api/overview")
    assert round(sum(m["completed"] or 0 for m in overview["throughput_per_minute"])) == 5


async def _at_least(read: Callable[[], Awaitable[float]], minimum: float) -> float | None:
    value = await read()
    return value if value >= minimum else None
