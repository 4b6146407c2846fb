"""The Python side: this package's worker, driven as child processes.

Every command runs ``python -m benchmarks._pyproc`` with the interpreter running the
benchmark; the schema is installed in-process by the package's own installer.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from sqlalchemy_graphile.errors import GraphileWorkerError

from ._database import count_jobs, install_our_schema
from ._modes import MODES
from ._procs import MeasurementError

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_loop() -> str:
    """``uvloop`` when it is installed (``nox -s bench`` installs it), else ``asyncio``."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


class PythonSide:
    """Commands that run our worker for each measurement."""

    modes = MODES
    measures_latency = True

    def __init__(
        self,
        loop: str,
        *,
        metrics: bool = False,
        plugins: str | None = None,
        enqueue: str = "jobs",
        asynchronous_commit: bool = False,
    ) -> None:
        self.loop = loop
        self.metrics = metrics
        #: How the enqueue run adds its jobs (see :data:`benchmarks._modes.ENQUEUE_METHODS`).
        self.enqueue = enqueue
        #: ``None``, or the plugin set (``hooks``, ``tracing``) the children run with.
        self.plugins = plugins
        #: Whether the children run with ``asynchronous_release_commit=True``.
        self.asynchronous_commit = asynchronous_commit
        self.name = "ours" if plugins is None else f"ours+{plugins}"
        if asynchronous_commit:
            self.name += "+async-commit"
        self.cwd = REPO_ROOT
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def _command(self, *args: object) -> list[str]:
        flags = ["--loop", self.loop, *(["--metrics"] if self.metrics else [])]
        if self.plugins is not None:
            flags += ["--plugins", self.plugins]
        if self.asynchronous_commit:
            flags.append("--asynchronous-release-commit")
        return [sys.executable, "-m", "benchmarks._pyproc", *flags, *map(str, args)]

    def jobs_left(self, url: str) -> tuple[int, int]:
        """``(jobs left, of which with an error)`` in the ``graphile_worker`` schema."""
        return count_jobs(url)

    def install_schema(self, url: str, *, timeout: float) -> None:
        """Install the schema with the package's installer (``timeout`` is not needed).

        Raises :class:`MeasurementError` if the installer fails."""
        try:
            install_our_schema(url)
        except (GraphileWorkerError, SQLAlchemyError) as error:
            raise MeasurementError(f"installing the schema failed: {error}") from error

    def enqueue_command(self, url: str, count: int) -> list[str]:
        """Add ``count`` jobs with one ``WorkerUtils.add_jobs`` (or ``copy_jobs``) call."""
        method = [] if self.enqueue == "jobs" else ["--method", self.enqueue]
        return self._command("enqueue", url, count, *method)

    def once_command(self, url: str, concurrency: int, mode: str) -> list[str]:
        """Run ``Worker.run_once()`` until the queue is empty."""
        return self._command("once", url, concurrency, mode)

    def latency_command(
        self, url: str, concurrency: int, samples: int, warmup: int, mode: str
    ) -> list[str]:
        """One worker and ``WorkerUtils.add_job`` per sample."""
        return self._command("latency", url, concurrency, samples, warmup, mode)

    def soak_command(self, url: str, concurrency: int, mode: str) -> list[str]:
        """Run ``Worker.run()`` until SIGTERM."""
        return self._command("serve", url, concurrency, mode)

    def describe(self) -> dict[str, str]:
        """Versions for the report."""
        from sqlalchemy_graphile import __version__

        return {
            "python": sys.version.split()[0],
            "sqlalchemy-graphile": __version__,
            "event_loop": self.loop,
            "metrics": "WorkerMetrics" if self.metrics else "off",
            "enqueue": self.enqueue,
        }
