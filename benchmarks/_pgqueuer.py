"""The pgqueuer side: the ``pgqueuer`` pip package, driven as child processes.

A third peer next to Node graphile-worker: every command runs
``python -m benchmarks._pgqproc`` with the interpreter running the benchmark, so pgqueuer
is imported only in those children (``pip install 'pgqueuer>=1.6'``; ``nox -s bench``
installs it). Its schema is installed with its own installer into each fresh scratch
database, so it never meets the ``graphile_worker`` schema.

pgqueuer is measured in the batched modes only, with its ``batch_size`` set to the mode's
batch size (:data:`benchmarks._modes.BATCH_SIZES`), and has no add->start latency run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import psycopg

from ._modes import BATCH_SIZES
from ._procs import MeasurementError, tail
from ._python import REPO_ROOT

PACKAGE = "pgqueuer"


def pgqueuer_installed() -> bool:
    """Whether the pgqueuer package can be imported by the children."""
    return importlib.util.find_spec(PACKAGE) is not None


class PgQueuerSide:
    """Commands that run pgqueuer's own worker for each measurement."""

    name = "pgqueuer"
    #: The modes pgqueuer has a configuration for: the batched ones.
    modes = tuple(BATCH_SIZES)
    #: It is not part of the add->start latency runs.
    measures_latency = False

    def __init__(self, loop: str, *, concurrency_limit: int) -> None:
        self.loop = loop
        #: The entrypoint's ``concurrency_limit`` (0: none); pgqueuer enforces it in SQL
        #: across all its processes.
        self.concurrency_limit = concurrency_limit
        self.cwd = REPO_ROOT
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def _command(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "benchmarks._pgqproc", "--loop", self.loop, *map(str, args)]

    def install_schema(self, url: str, *, timeout: float) -> None:
        """Install pgqueuer's tables with its installer; :class:`MeasurementError` if that
        fails or hangs."""
        try:
            done = subprocess.run(
                self._command("install", url),
                env=self.env,
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise MeasurementError(f"installing pgqueuer hung for {timeout:.0f} s") from None
        if done.returncode != 0:
            raise MeasurementError(f"installing pgqueuer failed:\n{tail(done.stderr)}")

    def enqueue_command(self, url: str, count: int) -> list[str]:
        """Add ``count`` jobs with one batched ``Queries.enqueue`` call."""
        return self._command("enqueue", url, count)

    def once_command(self, url: str, concurrency: int, mode: str) -> list[str]:
        """Run pgqueuer's worker in ``drain`` mode until the queue is empty, its entrypoint
        limited to :attr:`concurrency_limit` jobs at once (``concurrency`` is not used: the
        limit is global, not per process).

        ``unbatched`` (only used for the start-up run) gets pgqueuer's default batch of 10."""
        batch_size = BATCH_SIZES.get(mode, 10)
        return self._command("once", url, self.concurrency_limit, batch_size)

    def latency_command(
        self, url: str, concurrency: int, samples: int, warmup: int, mode: str
    ) -> list[str]:
        """Not measured for pgqueuer (see :attr:`measures_latency`)."""
        raise MeasurementError("pgqueuer has no add->start latency run")

    def jobs_left(self, url: str) -> tuple[int, int]:
        """``(jobs still queued or picked, jobs that raised)`` in pgqueuer's tables."""
        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute(
                "select (select count(*) from pgqueuer),"
                " (select count(*) from pgqueuer_log where status = 'exception')"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def describe(self) -> dict[str, str]:
        """Versions for the report."""
        return {
            PACKAGE: importlib.metadata.version(PACKAGE),
            "pgqueuer_concurrency_limit": str(self.concurrency_limit),
        }
