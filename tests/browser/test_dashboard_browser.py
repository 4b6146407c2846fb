"""The dashboard in a real browser: numbers, filters, a retry that a worker then runs, bulk
reschedule, read-only mode, sign-in, inert hostile payloads, reading without JavaScript, live
refresh, and a screenshot of every page (saved in the test's folder; with
``$SG_DASHBOARD_SCREENSHOTS`` set to a directory, copied there too, as for docs/images)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect
from playwright.sync_api import Error as PlaywrightError

from sqlalchemy_graphile import CronItem, Task, Worker, WorkerContext, WorkerUtils
from sqlalchemy_graphile.dashboard import BasicAuth, DashboardApp, dashboard_app

from .._dashboard_support import STATES, add_job, db_counts, fail, lock, seed_states
from .conftest import run_async, serving

SCREENSHOTS_ENV_VAR = "SG_DASHBOARD_SCREENSHOTS"


def _shoot(page: Page, tmp_path: Path, name: str) -> Path:
    """Save a screenshot of the page in the test's folder (and in the docs folder when
    asked for)."""
    path = tmp_path / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    target = os.environ.get(SCREENSHOTS_ENV_VAR)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    return path


@pytest.fixture
def base_url(db_url: str) -> Iterator[str]:
    with serving(dashboard_app(db_url)) as url:
        yield url


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def test_overview_numbers_match_the_database(
    page: Page, base_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    seed_states(db)
    page.goto(base_url + "/")
    expected = db_counts(db)
    for state in STATES:
        card = page.locator(f'[data-count="{state}"]')
        assert card.get_attribute("data-value") == str(expected[state])
        assert card.inner_text() == f"{expected[state]:,}"
    ready_emails = page.locator('tr[data-task="send_email"] td[data-state="ready"]')
    assert ready_emails.inner_text() == "3"
    locked_reports = page.locator('tr[data-queue="reports"] td[data-state="locked"]')
    assert locked_reports.inner_text() == "1"
    assert page.locator("[data-oldest-ready]").inner_text() != "-"
    _shoot(page, tmp_path, "overview")


def test_filter_and_search(page: Page, base_url: str, db: psycopg.Connection) -> None:
    ids = seed_states(db)
    page.goto(base_url + "/jobs")
    page.select_option("select[name=state]", "failed")
    page.fill("input[name=task]", "resize_image")
    page.click("button:text('Filter')")
    rows = page.locator("tr[data-job-id]")
    expect(rows).to_have_count(2)
    shown = sorted(int(rows.nth(i).get_attribute("data-job-id") or 0) for i in range(2))
    assert shown == sorted(ids["failed"])
    page.fill("input[name=q]", "bad image 1")
    page.click("button:text('Filter')")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-job-id") == str(ids["failed"][1])
    assert "q=bad+image+1" in page.url
    page.click("a:text('Clear')")
    expect(rows).to_have_count(sum(len(v) for v in ids.values()))


class BrowserRetried(Task):
    """A task that failed once; the test retries it from the dashboard."""

    IDENTIFIER: ClassVar[str] = "browser_retried"
    runs: ClassVar[list[str]] = []
    order: str

    async def run(self, ctx: WorkerContext) -> None:
        BrowserRetried.runs.append(self.order)


def test_retry_a_failed_job_then_a_worker_runs_it(
    page: Page, base_url: str, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    job_id = add_job(db, "browser_retried", payload='{"order": "A-17"}', max_attempts=2)
    fail(db, job_id, "ConnectionError: the payment service did not answer")
    page.goto(base_url + "/jobs?state=failed")
    page.click(f"tr[data-job-id='{job_id}'] a")
    expect(page.locator("[data-job-state]")).to_have_text("failed")
    expect(page.locator("[data-last-error]")).to_contain_text("payment service did not answer")
    _shoot(page, tmp_path, "job")
    page.click("a:text('Retry…')")
    expect(page.locator("h1")).to_have_text("Retry?")
    _shoot(page, tmp_path, "confirm")
    page.click("button:text('Retry')")
    expect(page.locator("[data-result]")).to_contain_text("Retried 1 job")
    _shoot(page, tmp_path, "result")
    attempts = db.execute(
        "select attempts from graphile_worker._private_jobs where id = %s", (job_id,)
    ).fetchone()
    assert attempts == (0,)

    BrowserRetried.runs.clear()
    worker = Worker(db_url, tasks=[BrowserRetried], handle_signals=False)
    run_async(worker.run_once())
    assert BrowserRetried.runs == ["A-17"]
    page.goto(base_url + f"/jobs/{job_id}")
    expect(page.locator("[data-error]")).to_contain_text(f"There is no job {job_id}")


def test_bulk_reschedule_of_a_filtered_selection(
    page: Page, base_url: str, db: psycopg.Connection
) -> None:
    reports = [add_job(db, "monthly_report", payload=f'{{"month": {m}}}') for m in range(1, 7)]
    other = add_job(db, "send_email")
    page.goto(base_url + "/jobs?task=monthly_report")
    page.check("input[name=select][value=filter]")
    page.click("button:text('Reschedule…')")
    expect(page.locator("[data-target-count]")).to_have_attribute("data-target-count", "6")
    page.fill("input[name=run_at]", "2031-01-02T03:04:05")
    page.fill("input[name=priority]", "4")
    page.click("button:text('Reschedule')")
    expect(page.locator("[data-result]")).to_contain_text(
        "Rescheduled 6 jobs to run at 2031-01-02 03:04:05 UTC and with priority 4"
    )
    rows = db.execute(
        "select id, run_at, priority from graphile_worker._private_jobs order by id"
    ).fetchall()
    when = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert [(r[0], r[1], r[2]) for r in rows if r[0] in reports] == [
        (job_id, when, 4) for job_id in reports
    ]
    assert next(r for r in rows if r[0] == other)[2] == 0

    # Ticked jobs: only those.
    page.goto(base_url + "/jobs?task=monthly_report")
    page.check(f"input[name=id][value='{reports[0]}']")
    page.check(f"input[name=id][value='{reports[1]}']")
    page.click("button:text('Run now…')")
    expect(page.locator("[data-target-count]")).to_have_attribute("data-target-count", "2")
    page.click("button:text('Run now')")
    expect(page.locator("[data-result]")).to_contain_text("Made 2 jobs runnable now")


def test_read_only_hides_and_refuses_actions(
    browser: Browser, db_url: str, db: psycopg.Connection
) -> None:
    job_id = add_job(db, "a", job_key="k")
    fail(db, job_id)
    with serving(dashboard_app(db_url, read_only=True)) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + f"/jobs/{job_id}")
        expect(page.locator(".badge.read-only")).to_be_visible()
        expect(page.locator("[data-job-state]")).to_have_text("failed")
        assert page.locator("a.button, button:text('Retry…')").count() == 0
        page.goto(url + "/jobs")
        assert page.locator("#bulk").count() == 0
        assert page.locator("input[name=id]").count() == 0
        refused = page.request.post(url + "/actions/retry", form={"id": str(job_id)})
        assert refused.status == 403
        assert "read-only" in refused.text()
        shown = page.goto(url + f"/confirm?action=retry&id={job_id}")
        assert shown is not None
        assert shown.status == 403
        context.close()


def _refused(context: BrowserContext, url: str) -> bool:
    """Whether the browser is refused the page: a 401 shown, or the browser giving up on
    the credentials it has (Chromium does either, depending on what it was given)."""
    try:
        response = context.new_page().goto(url)
    except PlaywrightError as error:
        return "ERR_INVALID_AUTH_CREDENTIALS" in str(error)
    return response is not None and response.status == 401


def test_sign_in_is_required(browser: Browser, db_url: str) -> None:
    with serving(dashboard_app(db_url, auth=BasicAuth("ops", "correct horse"))) as url:
        anonymous = browser.new_context()
        assert _refused(anonymous, url + "/jobs")
        plain = anonymous.request.get(url + "/api/jobs")
        assert plain.status == 401
        assert plain.headers["www-authenticate"].startswith("Basic")
        anonymous.close()
        wrong = browser.new_context(http_credentials={"username": "ops", "password": "x"})
        assert _refused(wrong, url + "/jobs")
        wrong.close()
        signed_in = browser.new_context(
            http_credentials={"username": "ops", "password": "correct horse"}
        )
        page = signed_in.new_page()
        response = page.goto(url + "/jobs")
        assert response is not None
        assert response.status == 200
        expect(page.locator(".user")).to_have_text("ops")
        signed_in.close()


_HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_a_hostile_payload_is_shown_inert(
    page: Page, base_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", seen)
    job_id = add_job(
        db,
        f"task{_HOSTILE}",
        payload='{"comment": "' + _HOSTILE.replace('"', '\\"') + ' zoë \u202egnp.exe"}',
        job_key=f"key{_HOSTILE}",
    )
    fail(db, job_id, f"Error: {_HOSTILE}")
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/jobs?q=" + "onerror"):
        page.goto(base_url + path)
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("img[src=x]").count() == 0, path
    expect(page.locator("tr[data-job-id]")).to_have_count(1)
    page.goto(base_url + f"/jobs/{job_id}")
    # Shown as the JSON text it is, quotes escaped.
    expect(page.locator("[data-payload]")).to_contain_text(json.dumps(_HOSTILE)[:-1])
    expect(page.locator("[data-payload]")).to_contain_text("zoë")
    expect(page.locator("[data-last-error]")).to_have_text(f"Error: {_HOSTILE}")
    _shoot(page, tmp_path, "hostile-payload")
    assert dialogs == []
    assert page.evaluate("window.__pwned") is None


def test_pages_read_without_javascript(
    browser: Browser, base_url: str, db: psycopg.Connection
) -> None:
    ids = seed_states(db)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(base_url + "/")
    assert page.locator('[data-count="failed"]').get_attribute("data-value") == "2"
    page.goto(base_url + "/jobs")
    page.select_option("select[name=state]", "locked")
    page.click("button:text('Filter')")
    assert page.locator("tr[data-job-id]").count() == 1
    page.click(f"tr[data-job-id='{ids['locked'][0]}'] a")
    assert page.locator("[data-job-state]").inner_text() == "locked"
    context.close()


def test_pages_refresh_live(browser: Browser, db_url: str, db: psycopg.Connection) -> None:
    with serving(dashboard_app(db_url, refresh_seconds=0.3)) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/jobs")
        expect(page.locator("tr[data-job-id]")).to_have_count(0)
        job_id = add_job(db, "arrives_later")
        expect(page.locator(f"tr[data-job-id='{job_id}']")).to_be_visible()
        page.goto(url + "/")
        expect(page.locator('[data-count="ready"]')).to_have_attribute("data-value", "1")
        lock(db, job_id, "worker-live")
        expect(page.locator('[data-count="locked"]')).to_have_attribute("data-value", "1")
        context.close()


class Thumbnail(Task):
    """Completes at once; gives the throughput chart something to count."""

    IDENTIFIER: ClassVar[str] = "resize_image"
    width: int = 0

    async def run(self, ctx: WorkerContext) -> None:
        return None


def _seed_a_busy_queue(db: psycopg.Connection) -> None:
    for n in range(8):
        add_job(db, "send_email", payload=f'{{"to": "user{n}@example.com"}}', queue_name="mail")
    for n in range(3):
        add_job(db, "generate_invoice", payload=f'{{"order": {7100 + n}}}', priority=-1)
    for day in range(1, 5):
        add_job(
            db,
            "monthly_report",
            payload=f'{{"account": {day}}}',
            run_at=(datetime.now(UTC) + timedelta(days=day, hours=3)).isoformat(),
            job_key=f"report-{day}",
        )
    failures = [
        (
            "send_email",
            '{"to": "grace@example.com", "subject": "Your invoice"}',
            "ConnectionError: smtp.example.com:587 timed out",
        ),
        (
            "sync_account",
            '{"account": 42, "since": "2026-11-01", "full": false}',
            "ValueError: no such account 42\n  the CRM answered 404 for /accounts/42",
        ),
    ]
    for identifier, payload, error in failures:
        failed = add_job(db, identifier, payload=payload, max_attempts=5)
        fail(db, failed, error)
    held = add_job(db, "sync_account", payload='{"account": 9}', queue_name="accounts")
    lock(db, held, "pool-4f1e2d3c4b5a69788a")
    db.execute(
        "insert into graphile_worker._private_workers values "
        "('pool-4f1e2d3c4b5a69788a', now() - interval '4 seconds', now() - interval '3 hours', "
        """'{"hostname": "worker-1", "pid": 2817}'), """
        "('pool-0a9b8c7d6e5f403122', now() - interval '9 seconds', now() - interval '2 hours', "
        """'{"hostname": "worker-2", "pid": 1944}')"""
    )
    db.execute(
        "insert into graphile_worker._private_known_crontabs values "
        "('nightly_cleanup', now() - interval '30 days', date_trunc('day', now())), "
        "('hourly_sync', now() - interval '30 days', date_trunc('hour', now()))"
    )


def test_every_page_screenshot(
    browser: Browser, db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    _seed_a_busy_queue(db)
    crontab = [
        CronItem("cleanup", "0 3 * * *", identifier="nightly_cleanup"),
        CronItem("sync_account", "15 * * * *", identifier="hourly_sync"),
        CronItem("send_digest", "0 8 * * 1", identifier="weekly_digest"),
    ]
    app: DashboardApp = dashboard_app(db_url, crontab=crontab, sample_interval=0.2)
    with serving(app) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(url + "/")

        async def process_some_jobs() -> None:
            async with WorkerUtils(db_url) as utils:
                for n in range(40):
                    await utils.add_job(Thumbnail(width=n))
            await Worker(db_url, tasks=[Thumbnail], handle_signals=False).run_once()

        run_async(process_some_jobs())
        # The sampler publishes what the worker did once its counters reach PostgreSQL.
        page.reload()
        expect(page.locator("svg.chart")).to_be_visible()
        for name, path in (
            ("overview", "/"),
            ("jobs", "/jobs"),
            ("queues", "/queues"),
            ("cron", "/cron"),
            ("workers", "/workers"),
        ):
            page.goto(url + path)
            expect(page.locator("main h1")).to_be_visible()
            _shoot(page, tmp_path, name)
        page.goto(url + "/jobs?state=failed")
        page.click("tr[data-job-id] a >> nth=0")
        _shoot(page, tmp_path, "job")
        page.click("a:text('Retry…')")
        _shoot(page, tmp_path, "confirm")
        context.close()
    shots = sorted(p.name for p in tmp_path.glob("dashboard-*.png"))
    assert len(shots) == 7
