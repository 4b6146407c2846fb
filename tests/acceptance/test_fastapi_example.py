"""``examples/fastapi_app``: its own test suite passes, and the app served by uvicorn takes
a sign-up over HTTP whose job a worker then runs, inside the app or as its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from .._processes import DEADLINE_SECONDS, Process, reaped, terminate, wait_until
from .._user_projects import postgresql_options

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app"


def _environment(**extra: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GRAPHILE_"))}
    return {**kept, **extra}


def test_the_examples_own_test_suite_passes(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'basetemp'}",
            *postgresql_options(request.config),
        ],
        cwd=EXAMPLE,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout, result.stdout


@contextmanager
def _started(
    command: list[str], log_path: Path, env: dict[str, str], **popen: object
) -> Iterator[Process]:
    with log_path.open("w") as log:
        process = subprocess.Popen(  # type: ignore[call-overload]
            command, cwd=EXAMPLE, env=env, stdout=log, stderr=subprocess.STDOUT, **popen
        )
        with reaped(process):
            yield process


@contextmanager
def _uvicorn(db_url: str, log_path: Path, *, worker_in_app: bool) -> Iterator[tuple[Process, str]]:
    """The app served by uvicorn on a socket of ours (a free port, already listening, so
    requests wait for the server to start instead of failing)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        command = [sys.executable, "-m", "uvicorn", "--factory", "signup_service.app:create_app"]
        env = _environment(DATABASE_URL=db_url, WORKER_IN_APP="1" if worker_in_app else "0")
        fd = listener.fileno()
        with _started([*command, "--fd", str(fd)], log_path, env, pass_fds=[fd]) as process:
            yield process, f"http://127.0.0.1:{listener.getsockname()[1]}"


def _welcomed(client: httpx.Client, user_id: int) -> bool:
    response = client.get(f"/signups/{user_id}")
    response.raise_for_status()
    return bool(response.json()["welcomed"])


def _sign_up(client: httpx.Client, email: str) -> int:
    response = client.post("/signups", json={"email": email})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _stop_uvicorn(server: Process, log_path: Path) -> None:
    """SIGTERM: uvicorn shuts the app down (its lifespan stops the worker), then ends by
    the signal it caught, as uvicorn does."""
    status = terminate(server, log_path)
    output = log_path.read_text()
    assert status in (0, -signal.SIGTERM), output
    assert "Application shutdown complete." in output, output
    assert "Traceback" not in output, output


def _no_locks_left(db_url: str) -> None:
    with psycopg.connect(db_url) as db:
        locked = db.execute(
            "select count(*) from graphile_worker._private_jobs where locked_by is not null"
        ).fetchone()
        assert locked == (0,)


def test_uvicorn_serves_the_app_and_its_lifespan_worker_runs_the_job(
    db_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "uvicorn.log"
    with _uvicorn(db_url, log_path, worker_in_app=True) as (server, base_url):
        with httpx.Client(base_url=base_url, timeout=DEADLINE_SECONDS) as client:
            user_id = _sign_up(client, "ada@example.com")
            assert client.post("/signups", json={"email": "ada@example.com"}).status_code == 409
            wait_until(lambda: _welcomed(client, user_id), server, log_path)
        _stop_uvicorn(server, log_path)
    _no_locks_left(db_url)


def test_the_worker_runs_as_its_own_process_from_the_same_tasks(
    db_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    server_log, worker_log = tmp_path / "uvicorn.log", tmp_path / "worker.log"
    with ExitStack() as stack:
        server, base_url = stack.enter_context(_uvicorn(db_url, server_log, worker_in_app=False))
        client = stack.enter_context(httpx.Client(base_url=base_url, timeout=DEADLINE_SECONDS))
        user_id = _sign_up(client, "ada@example.com")
        waiting = db.execute(
            "select count(*) from graphile_worker.jobs where task_identifier = 'send_welcome_email'"
        ).fetchone()
        assert waiting == (1,), "the job waits: the app runs no worker"

        command = [sys.executable, "-m", "signup_service.worker"]
        worker = stack.enter_context(
            _started(command, worker_log, _environment(DATABASE_URL=db_url))
        )
        wait_until(lambda: _welcomed(client, user_id), worker, worker_log)
        assert "mail to ada@example.com: Welcome!" in worker_log.read_text()
        assert terminate(worker, worker_log) == 0, worker_log.read_text()
        _stop_uvicorn(server, server_log)
    _no_locks_left(db_url)
