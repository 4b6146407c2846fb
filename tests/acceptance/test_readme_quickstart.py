"""The README's Quickstart, run as written, the way a new user would: its code blocks are
taken from README.md as they are, in a fresh virtualenv holding `pip install <checkout>` with
only the extras the README's install line names, against a fresh database. The placeholder
database in the blocks (``app@db/app``) is the only thing replaced.

The same virtualenv also runs the example application's Alembic history, which includes our
revisions by package resource path: an installed package, not a checkout, provides them.

pip uses its cache; without a reachable package index (and nothing cached) the tests fail
and say so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from .._processes import reaped, terminate, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: The database the README's blocks connect to, replaced by the test database.
PLACEHOLDER = "app@db/app"
#: How long pip may take to build and install the checkout with its dependencies.
PIP_SECONDS = 240
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
_UNREACHABLE = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Max retries exceeded",
    "No matching distribution found",
    "Could not find a version that satisfies",
    "Network is unreachable",
    "ConnectTimeoutError",
)


def _section(title: str) -> str:
    """The text of the README section ``## title``, up to the next one."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"README.md has no section {title!r}"
    return match.group(1)


def _blocks(section: str) -> list[tuple[str, str]]:
    """The fenced code blocks of ``section``: ``(language, text)``, in order."""
    return _FENCE.findall(section)


def _install_extras() -> str:
    """The extras of the README's install line, ``pip install "sqlalchemy-graphile[...]"``."""
    lines = [line for _, block in _blocks(_section("Install")) for line in block.splitlines()]
    installs = [line for line in lines if line.startswith("pip install ")]
    assert len(installs) == 1, f"one install line expected in the README: {installs}"
    match = re.fullmatch(r'pip install "sqlalchemy-graphile(\[[\w,]+\])?"', installs[0])
    assert match is not None, f"unexpected install line: {installs[0]}"
    return match.group(1) or ""


def _environment(venv: Path) -> dict[str, str]:
    """A shell with the virtualenv first on PATH, and nothing of ours set."""
    hidden = {"PYTHONPATH", "PYTHONHOME", "DATABASE_URL", "GRAPHILE_WORKER_SCHEMA", "PGDATABASE"}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the checkout installed from source (not editable), with the
    extras the README names and nothing else."""
    path = tmp_path_factory.mktemp("quickstart") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    requirement = f"{ROOT}{_install_extras()}"
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
    pip += ["--retries", "2", "--timeout", "30"]  # an unreachable index fails soon
    try:
        result = subprocess.run(
            [*pip, "--disable-pip-version-check", requirement],
            env=_environment(path),
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=PIP_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"pip install {requirement!r} did not finish within {PIP_SECONDS} s: is the "
            "package index (PyPI) reachable from here?",
            pytrace=False,
        )
    if result.returncode != 0:
        output = result.stdout + result.stderr
        tail = "\n".join(output.splitlines()[-15:])
        if any(sign in output for sign in _UNREACHABLE):
            pytest.fail(
                "the README Quickstart test installs the package with pip (using pip's cache), "
                "and pip could not reach the package index (is PyPI reachable from here?):\n"
                + tail,
                pytrace=False,
            )
        pytest.fail(f"pip install {requirement!r} failed:\n{tail}", pytrace=False)
    return path


def _database(empty_db_url: str) -> str:
    """The test database in place of the README's placeholder ``app@db/app``."""
    return empty_db_url.split("://", 1)[1]


def _literal(text: str, database: str) -> str:
    assert "@db/" not in text.replace(PLACEHOLDER, ""), f"an unexpected database in:\n{text}"
    return text.replace(PLACEHOLDER, database)


def _run(command: str, app: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"


def _until_logged(command: list[str], line: str, app: Path, env: dict[str, str]) -> str:
    """Start a long-running worker, wait for ``line`` in its output, stop it with SIGTERM
    (a graceful shutdown, exit status 0) and return its output."""
    log_path = app / f"worker-{len(list(app.glob('worker-*.log')))}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT)
        with reaped(process):
            wait_until(lambda: line in log_path.read_text(), process, log_path)
            status = terminate(process, log_path)
    output = log_path.read_text()
    assert status == 0, output
    return output


def _count(db: psycopg.Connection, sql: str) -> int:
    row = db.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.timeout(PIP_SECONDS + 120)
def test_the_quickstart_runs_as_written(venv: Path, empty_db_url: str, tmp_path: Path) -> None:
    quickstart = _section("Quickstart")
    logged = re.search(r"its task logs `([^`]+)`", quickstart)
    assert logged is not None, "the Quickstart says which line the task logs"
    expected_line = logged.group(1)
    database = _database(empty_db_url)
    app = tmp_path / "app"
    app.mkdir()
    env = _environment(venv)
    db = psycopg.connect(empty_db_url, autocommit=True)
    db.execute("create table users (email text not null)")  # the app's own table
    adds: list[str] = []
    workers = 0
    entry_point: str | None = None
    for language, text in _blocks(quickstart):
        code = _literal(text, database)
        if language == "python":
            first = code.splitlines()[0]
            assert first.startswith("# "), f"a Quickstart block without its file name:\n{code}"
            path = app / first.removeprefix("# ")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code, encoding="utf-8")
            if "await worker.run()" in code:
                entry_point = path.name
            continue
        assert language == "sh", f"a Quickstart block in {language!r}"
        for command in code.splitlines():
            if " run --tasks " in command:
                output = _until_logged(["bash", "-c", f"exec {command}"], expected_line, app, env)
                assert "started with 1 task type(s) (send_email), concurrency 10" in output
                workers += 1
                assert _count(db, "select count(*) from graphile_worker.jobs") == 0, output
            else:
                _run(command, app, env)
                if command.startswith("python "):
                    adds.append(command)
    assert workers == 1, "the Quickstart runs a worker from the command line"
    assert adds == ["python signup.py"]
    assert _count(db, "select count(*) from users") == 1

    # The entry point: add a job as the Quickstart does, then run the worker it shows.
    assert entry_point is not None, "the Quickstart shows an entry point running a Worker"
    _run(adds[0], app, env)
    assert _count(db, "select count(*) from graphile_worker.jobs") == 1
    output = _until_logged(["python", entry_point], expected_line, app, env)
    assert "sqlalchemy_graphile.worker: worker sgpool-" in output  # its start line
    assert output.rstrip().endswith(": stopped"), output
    assert _count(db, "select count(*) from graphile_worker.jobs") == 0
    assert _count(db, "select count(*) from users") == 2
    db.close()


@pytest.mark.timeout(PIP_SECONDS + 120)
def test_alembic_includes_our_revisions_from_the_installed_package(
    venv: Path, empty_db_url: str, tmp_path: Path
) -> None:
    """The example application's ``alembic.ini`` lists ``sqlalchemy_graphile:migrations/
    versions``; run from a pip install (no checkout on the path), ``alembic upgrade head``
    installs the job queue, then the app's table."""
    app = tmp_path / "alembic_app"
    shutil.copytree(
        ROOT / "examples" / "alembic_app", app, ignore=shutil.ignore_patterns("__pycache__")
    )
    env = _environment(venv)
    env["DATABASE_URL"] = empty_db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    for args in (["upgrade", "head"], ["heads"], ["current"]):
        result = subprocess.run(
            [str(venv / "bin" / "alembic"), *args],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "app0002 (head) (mergepoint)"
    with psycopg.connect(empty_db_url) as db:
        assert _count(db, "select max(id) from graphile_worker.migrations") == 20
        assert _count(db, "select count(*) from users") == 0
