"""Worker processes for the fault-injection tests, and waiting with a deadline.

A :class:`WorkerProcess` is ``python -m sqlalchemy_graphile -c URL run --tasks
tests.chaos._tasks --name sg-<role>-<n> ...`` with its output in a log file, so its
connections show in ``pg_stat_activity`` as ``sg-<role>-<n>`` (and ``sg-<role>-<n>-listen``)
and its lock owner id can be read from its log.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

from ._ledger import LEDGER_URL_ENV

ROOT = Path(__file__).resolve().parents[2]
TASKS_MODULE = "tests.chaos._tasks"

T = TypeVar("T")

_POOL_ID = re.compile(r"worker (sgpool-[0-9a-f]+):")


def wait_for(condition: Callable[[], T | None], what: str, within: float = 30.0) -> T:
    """Call ``condition`` every 50 ms until it returns something truthy, and return that;
    raise ``AssertionError`` naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(0.05)


class WorkerProcess:
    """One worker process; :meth:`start` launches it."""

    def __init__(self, name: str, url: str, log_path: Path, options: Sequence[str]) -> None:
        self.name = name
        self.url = url
        self.log_path = log_path
        self.options = list(options)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._pool_id: str | None = None

    def start(self) -> WorkerProcess:
        command = [
            sys.executable,
            "-m",
            "sqlalchemy_graphile",
            "-c",
            self.url,
            "run",
            "--no-migrate",
            "--tasks",
            TASKS_MODULE,
            "--name",
            self.name,
            *self.options,
        ]
        env = {**os.environ, LEDGER_URL_ENV: self.url, "PYTHONUNBUFFERED": "1"}
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, "the worker was not started"
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, text: str, within: float = 30.0) -> None:
        """Wait until the log contains ``text``; fail early if the process ends first."""

        def found() -> bool:
            if text in self.log():
                return True
            if not self.alive:
                raise AssertionError(
                    f"{self.name} exited ({self.returncode}) without logging {text!r}:\n"
                    + self.log()
                )
            return False

        wait_for(found, f"{self.name} to log {text!r}", within)

    @property
    def pool_id(self) -> str:
        """The worker's lock owner id (``locked_by``), from the line it logs at start-up."""
        if self._pool_id is None:

            def logged() -> str | None:
                match = _POOL_ID.search(self.log())
                return match.group(1) if match else None

            self._pool_id = wait_for(logged, f"{self.name} to log its worker id")
        return self._pool_id

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, within: float = 30.0) -> int:
        """Wait for the process to exit; return its status (``-N`` for signal ``N``)."""
        try:
            return self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {within:.0f} s:\n{self.log()}"
            ) from None

    def kill(self) -> int:
        """SIGKILL, and wait for the process to be gone."""
        self.signal(signal.SIGKILL)
        return self.wait()

    def close(self) -> None:
        """Kill the process if it still runs and close its log (fixture teardown)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class Workers:
    """Starts worker processes named ``sg-<role>-<n>`` and cleans them up."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self._url = url
        self._log_dir = log_dir
        self._started: list[WorkerProcess] = []

    def start(
        self,
        role: str,
        *,
        concurrency: int = 1,
        poll_interval: float = 0.5,
        options: Sequence[str] = (),
    ) -> WorkerProcess:
        """Start a worker with ``-j concurrency --poll-interval poll_interval`` and any
        further ``run`` options."""
        number = sum(1 for w in self._started if w.name.startswith(f"sg-{role}-")) + 1
        name = f"sg-{role}-{number}"
        worker = WorkerProcess(
            name,
            self._url,
            self._log_dir / f"{name}.log",
            ["-j", str(concurrency), "--poll-interval", str(poll_interval), *options],
        )
        self._started.append(worker)
        return worker.start()

    def restart(self, worker: WorkerProcess) -> WorkerProcess:
        """Start a new process with ``worker``'s name and options (and a log of its own)."""
        log_path = worker.log_path.with_name(f"{worker.name}-again.log")
        again = WorkerProcess(worker.name, self._url, log_path, worker.options)
        self._started.append(again)
        return again.start()

    def dead_pool_ids(self) -> list[str]:
        """The lock owner ids of the workers that have exited."""
        return [w.pool_id for w in self._started if not w.alive]

    def close(self) -> None:
        for worker in self._started:
            worker.close()
