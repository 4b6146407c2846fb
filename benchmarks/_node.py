"""The Node side: graphile-worker 0.17 from the npm registry, driven as child processes.

The package is installed once into a cache folder (``npm install graphile-worker@0.17``)
and reused by later runs. Throughput runs use its CLI (``graphile-worker --once``) with a
``graphile.config.js`` preset written to the run's temporary folder; enqueue and latency
runs use the small scripts in ``benchmarks/node/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ._database import count_jobs
from ._modes import MODES, NODE_OPTIONS
from ._procs import MeasurementError, tail

PACKAGE = "graphile-worker"
VERSION_RANGE = "0.17"
SCRIPTS = Path(__file__).parent / "node"
TASK_DIRECTORY = SCRIPTS / "tasks"


def default_install_dir() -> Path:
    """``$XDG_CACHE_HOME/sqlalchemy-graphile/bench-node`` (``~/.cache`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sqlalchemy-graphile" / "bench-node"


def installed_version(install_dir: Path) -> str | None:
    """The version of graphile-worker installed in ``install_dir``, if any."""
    manifest = install_dir / "node_modules" / PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(install_dir: Path, *, timeout: float = 300.0) -> str:
    """Install graphile-worker 0.17 into ``install_dir`` unless it is there; its version.

    Concurrent runs wait for each other on a lock file. Raises :class:`MeasurementError`
    if npm is missing or fails.
    """
    install_dir.mkdir(parents=True, exist_ok=True)
    with (install_dir / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = installed_version(install_dir)
        if version is not None and version.startswith(VERSION_RANGE + "."):
            return version
        npm = shutil.which("npm")
        if npm is None:
            raise MeasurementError("npm is not on PATH; install Node.js 18 or later")
        manifest = install_dir / "package.json"
        if not manifest.exists():
            manifest.write_text(json.dumps({"name": "sg-bench-node", "private": True}) + "\n")
        command = [npm, "install", "--no-audit", "--no-fund", f"{PACKAGE}@{VERSION_RANGE}"]
        try:
            done = subprocess.run(
                command, cwd=install_dir, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise MeasurementError(f"npm install did not finish in {timeout:.0f} s") from None
        version = installed_version(install_dir)
        if done.returncode != 0 or version is None:
            raise MeasurementError(
                f"npm install {PACKAGE}@{VERSION_RANGE} failed:\n{tail(done.stderr)}"
            )
        return version


def node_executable() -> str:
    """The ``node`` on PATH; :class:`MeasurementError` if there is none."""
    node = shutil.which("node")
    if node is None:
        raise MeasurementError("node is not on PATH; install Node.js 18 or later")
    return node


def worker_options(
    connection_string: str, concurrency: int, mode: str, *, with_tasks: bool
) -> dict[str, Any]:
    """The preset's ``worker`` options: the connection, ``concurrentJobs: C``,
    ``maxPoolSize: C + 1``, the mode's options and, for the CLI, the task directory."""
    options: dict[str, Any] = {
        "connectionString": connection_string,
        "concurrentJobs": concurrency,
        "maxPoolSize": concurrency + 1,
        **NODE_OPTIONS[mode],
    }
    if with_tasks:
        options["taskDirectory"] = str(TASK_DIRECTORY)
    return options


def render_config(options: dict[str, Any]) -> str:
    """A ``graphile.config.js`` whose preset has these ``worker`` options.

    The options are written as JSON, which is valid JavaScript, so no value can break out.
    """
    body = json.dumps({"worker": options}, indent=2, sort_keys=True)
    return f'"use strict";\n// Written by the benchmark for one run.\nmodule.exports = {body};\n'


class NodeSide:
    """Commands that run Node graphile-worker for each measurement."""

    name = "node"
    modes = MODES
    measures_latency = True

    def __init__(self, install_dir: Path, workdir: Path) -> None:
        self.install_dir = install_dir
        self.workdir = workdir
        self.node = node_executable()
        self.version = ensure_installed(install_dir)
        manifest = json.loads((install_dir / "node_modules" / PACKAGE / "package.json").read_text())
        self.cli = install_dir / "node_modules" / PACKAGE / manifest["bin"]["graphile-worker"]
        self.cwd = workdir
        self.env = {
            **os.environ,
            "NODE_PATH": str(install_dir / "node_modules"),
            "NO_LOG_SUCCESS": "1",
        }
        self._configs = 0

    def _config(self, options: dict[str, Any]) -> str:
        self._configs += 1
        path = self.workdir / f"graphile.config.{self._configs}.js"
        path.write_text(render_config(options))
        return str(path)

    def jobs_left(self, url: str) -> tuple[int, int]:
        """``(jobs left, of which with an error)`` in the ``graphile_worker`` schema."""
        return count_jobs(url)

    def install_schema(self, url: str, *, timeout: float) -> None:
        """Install the schema the way Node does: ``graphile-worker --schema-only``.

        Raises :class:`MeasurementError` if it fails."""
        config = self._config({"connectionString": url})
        command = [self.node, str(self.cli), "-C", config, "--schema-only"]
        try:
            done = subprocess.run(
                command, env=self.env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise MeasurementError(
                f"graphile-worker --schema-only hung for {timeout:.0f} s"
            ) from None
        if done.returncode != 0:
            raise MeasurementError(f"graphile-worker --schema-only failed:\n{tail(done.stderr)}")

    def enqueue_command(self, url: str, count: int) -> list[str]:
        """Add ``count`` jobs with one ``workerUtils.addJobs`` call."""
        argument = json.dumps({"connectionString": url, "count": count})
        return [self.node, str(SCRIPTS / "enqueue.js"), argument]

    def once_command(self, url: str, concurrency: int, mode: str) -> list[str]:
        """Run ``graphile-worker --once`` until the queue is empty."""
        config = self._config(worker_options(url, concurrency, mode, with_tasks=True))
        return [self.node, str(self.cli), "-C", config, "--once"]

    def latency_command(
        self, url: str, concurrency: int, samples: int, warmup: int, mode: str
    ) -> list[str]:
        """One ``run()`` runner and ``addJob`` per sample."""
        argument = json.dumps(
            {
                "worker": worker_options(url, concurrency, mode, with_tasks=False),
                "samples": samples,
                "warmup": warmup,
            }
        )
        return [self.node, str(SCRIPTS / "latency.js"), argument]

    def describe(self) -> dict[str, str]:
        """Versions for the report."""
        done = subprocess.run([self.node, "--version"], capture_output=True, text=True, check=True)
        return {"node": done.stdout.strip(), PACKAGE: self.version}
