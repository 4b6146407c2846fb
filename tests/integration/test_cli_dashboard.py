"""``sqlalchemy-graphile dashboard``: it serves the dashboard on a loopback address, with
sign-in when asked, and refuses to serve without sign-in elsewhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from sqlalchemy_graphile.cli import EXIT_ERROR, main

from .._dashboard_support import add_job
from .._processes import reaped, terminate, wait_until


def test_no_sign_in_is_refused_off_loopback(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", db_url, "dashboard", "--host", "0.0.0.0", "--port", "0"]) == EXIT_ERROR
    assert "--auth none serves the dashboard without sign-in" in capsys.readouterr().err


def test_a_missing_crontab_file_is_a_clear_error(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.crontab")
    assert main(["-c", db_url, "dashboard", "--crontab", missing]) == EXIT_ERROR
    assert "cannot read --crontab" in capsys.readouterr().err


@pytest.mark.parametrize("password_from_env", [True, False])
def test_serves_with_basic_auth_until_stopped(
    db_url: str, db: psycopg.Connection, tmp_path: Path, password_from_env: bool
) -> None:
    job_id = add_job(db, "shown_by_cli")
    log_path = tmp_path / "dashboard.log"
    env = {k: v for k, v in os.environ.items() if k != "SG_DASHBOARD_PASSWORD"}
    if password_from_env:
        env["SG_DASHBOARD_PASSWORD"] = "from-the-env"
    argv = [sys.executable, "-m", "sqlalchemy_graphile", "-c", db_url, "dashboard"]
    argv += ["--port", "0", "--auth", "basic", "--user", "ops"]
    with (
        log_path.open("wb") as log,
        reaped(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)) as process,
    ):
        wait_until(lambda: "Press Ctrl-C" in log_path.read_text(), process, log_path)
        printed = log_path.read_text()
        url = re.findall(r"http://127\.0\.0\.1:\d+/", printed)[0]
        if password_from_env:
            password = "from-the-env"
            assert "password" not in printed
        else:
            password = re.findall(r"with password (\S+)", printed)[0]
        assert httpx.get(url + "api/overview").status_code == 401
        listed = httpx.get(url + "api/jobs", auth=("ops", password))
        assert listed.status_code == 200, listed.text
        assert [job["id"] for job in listed.json()["jobs"]] == [job_id]
        page = httpx.get(url + f"jobs/{job_id}", auth=("ops", password))
        assert "shown_by_cli" in page.text
        assert terminate(process, log_path) == 0, log_path.read_text()


def test_a_short_secret_is_refused(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SG_DASHBOARD_SECRET", "too short")
    assert main(["-c", db_url, "dashboard", "--port", "0"]) == EXIT_ERROR
    assert "SG_DASHBOARD_SECRET must be at least 16 characters" in capsys.readouterr().err
