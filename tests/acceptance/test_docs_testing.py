"""docs/testing.md is a project: its code blocks are written out as files and its test suite
is run by pytest in a subprocess, serially and with xdist, on pytest-postgresql templates
and on one shared database; the failure message it shows is the one pytest prints."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from .._doc_blocks import blocks, project_files, variants
from .._user_projects import RUN_TIMEOUT, clean_environment, postgresql_options, write_files

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
ONE_DATABASE = "one database for the whole run"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    clean_environment(monkeypatch)
    return pytester


def test_every_code_block_is_a_file_of_the_project_but_the_sample_message() -> None:
    unnamed = [block for block in blocks(PAGE) if block.path is None]
    assert [block.language for block in unnamed] == ["text"]
    assert variants(PAGE) == {ONE_DATABASE}


@pytest.mark.parametrize("xdist", [["-p", "no:xdist"], ["-n", "2"]], ids=["serial", "xdist"])
def test_the_project_passes_on_pytest_postgresql_templates(
    project: pytest.Pytester, request: pytest.FixtureRequest, xdist: list[str]
) -> None:
    write_files(project.path, project_files(PAGE))
    result = project.runpytest_subprocess(
        *xdist, *postgresql_options(request.config), timeout=RUN_TIMEOUT
    )
    result.assert_outcomes(passed=9)


def test_the_project_passes_on_one_database_in_rolled_back_transactions(
    project: pytest.Pytester, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as db:  # the application's migrations
        db.execute("create table users (id serial primary key, email text unique not null)")
    monkeypatch.setenv("TEST_DATABASE_URL", empty_db_url)
    write_files(project.path, project_files(PAGE, ONE_DATABASE))
    # The end-to-end tests commit, so they are not run on a shared database.
    tests = ["tests/test_signup.py", "tests/test_jobs.py"]
    result = project.runpytest_subprocess("-n", "2", *tests, timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=8)
    with psycopg.connect(empty_db_url) as db:
        assert db.execute("select count(*) from graphile_worker.jobs").fetchone() == (0,)
        assert db.execute("select count(*) from users").fetchone() == (0,)


def test_the_sample_failure_message_is_what_pytest_prints(
    project: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    files = project_files(PAGE)
    files["tests/test_signup.py"] += (
        "\n\ndef test_expects_bob(session):\n"
        '    sign_up(session, "ada@example.com")\n'
        '    assert_enqueued(session, SendWelcome, email="bob@example.com")\n'
    )
    write_files(project.path, files)
    result = project.runpytest_subprocess(
        "-p",
        "no:xdist",
        *postgresql_options(request.config),
        "tests/test_signup.py::test_expects_bob",
        timeout=RUN_TIMEOUT,
    )
    result.assert_outcomes(failed=1)
    [sample] = [block.text for block in blocks(PAGE) if block.language == "text"]
    result.stdout.re_match_lines(
        [r"E\s+" + re.escape(line) + "$" for line in sample.splitlines()], consecutive=True
    )
