"""The demo running with ``--forever`` prints a ``dashboard`` command; run as printed (on a
free port), the dashboard shows the demo's queue, and a job added meanwhile."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from .._processes import reaped, terminate, wait_until


def _environment() -> dict[str, str]:
    hidden = ("DATABASE_URL", "GRAPHILE_WORKER_SCHEMA", "SG_DEMO_EMBEDDED")
    return {k: v for k, v in os.environ.items() if k not in hidden}


def test_the_dashboard_the_demo_prints_shows_its_jobs(
    empty_db_url: str, postgresql_empty: psycopg.Connection, tmp_path: Path
) -> None:
    demo_log = tmp_path / "demo.log"
    dashboard_log = tmp_path / "dashboard.log"
    demo_argv = [sys.executable, "-m", "sqlalchemy_graphile", "-c", empty_db_url]
    with (
        demo_log.open("w") as log,
        reaped(
            subprocess.Popen(
                [*demo_argv, "demo", "--forever"],
                env=_environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ) as demo,
    ):
        wait_until(lambda: " dashboard\n" in demo_log.read_text(), demo, demo_log)
        printed = re.search(r"^\s+sqlalchemy-graphile (.* dashboard)$", demo_log.read_text(), re.M)
        assert printed is not None, demo_log.read_text()
        # The printed URL hides the password; the test database has none.
        argv = [sys.executable, "-m", "sqlalchemy_graphile", *shlex.split(printed.group(1))]
        with (
            dashboard_log.open("w") as log,
            reaped(
                subprocess.Popen(
                    [*argv, "--port", "0"], env=_environment(), stdout=log, stderr=subprocess.STDOUT
                )
            ) as dashboard,
        ):
            wait_until(
                lambda: "Press Ctrl-C" in dashboard_log.read_text(), dashboard, dashboard_log
            )
            url = re.findall(r"http://127\.0\.0\.1:\d+/", dashboard_log.read_text())[0]
            postgresql_empty.execute(
                "select graphile_worker_demo.add_job('demo_greet', '{\"name\": \"later\"}',"
                " run_at := now() + interval '1 day')"
            )
            postgresql_empty.commit()
            session = httpx.get(url + "api/session").json()
            assert session["schema"] == "graphile_worker_demo"
            later = {"state": "scheduled", "q": "later"}
            listed = httpx.get(url + "api/jobs", params=later).json()
            assert [job["task_identifier"] for job in listed["jobs"]] == ["demo_greet"]
            page = httpx.get(url + "jobs").text
            assert "demo_greet" in page
            assert terminate(dashboard, dashboard_log) == 0, dashboard_log.read_text()
        assert terminate(demo, demo_log) == 0, demo_log.read_text()
