"""Graphile Worker for Node (npm ``graphile-worker@0.17``), installed once and cached.

Used by the compatibility tests (``tests/compat``) and by the ``node`` schema flavour of
``tests/conftest.py``, whose template database Node's own ``--schema-only`` installs.

The package is installed with ``npm install --no-audit --no-fund graphile-worker@0.17`` into
``~/.cache/sqlalchemy-graphile/node-graphile-worker-0.17`` (``$SG_NODE_CACHE_DIR`` replaces
``~/.cache/sqlalchemy-graphile``) the first time it is needed, under a file lock so parallel
test runs share one install, and reused afterwards.

Node.js and npm must be on ``PATH``. Without them, the tests that need them are skipped with
one line saying why, except in CI (``CI=true`` in the environment), where that is a failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "graphile-worker@0.17"
MAJOR_MINOR = "0.17."
CACHE_NAME = "node-graphile-worker-0.17"
NPM_INSTALL_TIMEOUT = 600
SCHEMA_ONLY_TIMEOUT = 120


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``), where tests needing Node must not be skipped."""
    return os.environ.get("CI", "").lower() == "true"


def cache_directory() -> Path:
    """Where the npm package is installed (created on first use)."""
    parent = os.environ.get("SG_NODE_CACHE_DIR") or "~/.cache/sqlalchemy-graphile"
    return Path(parent).expanduser() / CACHE_NAME


@dataclass(frozen=True)
class NodeInstall:
    """The ``node`` executable and the directory holding the cached npm install."""

    node: str
    install_dir: Path

    @property
    def node_modules(self) -> Path:
        return self.install_dir / "node_modules"

    @property
    def cli(self) -> Path:
        """The ``graphile-worker`` command."""
        return self.node_modules / ".bin" / "graphile-worker"


def missing_node_tools() -> list[str]:
    """Which of ``node`` and ``npm`` are not on ``PATH``."""
    return [name for name in ("node", "npm") if shutil.which(name) is None]


def no_node_reason(missing: list[str]) -> str:
    """Why tests needing Node cannot run, and what to do about it."""
    verb = "are" if len(missing) > 1 else "is"
    return (
        f"{' and '.join(missing)} {verb} not on PATH; install Node.js 18+ with npm "
        "(e.g. `apt-get install nodejs npm`) to run them"
    )


def node_install() -> NodeInstall:
    """The cached install, made on first use; skips (fails in CI) without Node and npm."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        reason = f"Graphile Worker for Node is needed: {no_node_reason(missing_node_tools())}"
        if in_ci():
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    install_dir = cache_directory()
    _install(npm, install_dir)
    return NodeInstall(node, install_dir)


def install_schema_with_node(install: NodeInstall, db_url: str, schema: str | None = None) -> None:
    """Run ``graphile-worker --schema-only`` (Node's own migrations) on ``db_url``."""
    command = [str(install.cli), "--schema-only", "--connection", db_url]
    if schema is not None:
        command += ["--schema", schema]
    environment = {k: v for k, v in os.environ.items() if k != "GRAPHILE_WORKER_SCHEMA"}
    # An empty working directory, so that no graphile.config.* is picked up.
    with tempfile.TemporaryDirectory() as empty:
        result = subprocess.run(
            command,
            cwd=empty,
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SCHEMA_ONLY_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        raise AssertionError(
            f"graphile-worker --schema-only exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


def _installed(install_dir: Path) -> bool:
    package = install_dir / "node_modules" / "graphile-worker" / "package.json"
    executable = install_dir / "node_modules" / ".bin" / "graphile-worker"
    if not (package.is_file() and executable.exists()):
        return False
    version: str = json.loads(package.read_text()).get("version", "")
    return version.startswith(MAJOR_MINOR)


def _install(npm: str, install_dir: Path) -> None:
    """Install the package into ``install_dir`` unless it is there, under a file lock."""
    install_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = install_dir.parent / f"{install_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(install_dir):
            return
        staging = Path(tempfile.mkdtemp(prefix=f"{install_dir.name}.", dir=install_dir.parent))
        try:
            (staging / "package.json").write_text('{"private": true}\n')
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", PACKAGE],
                cwd=staging,
                capture_output=True,
                text=True,
                timeout=NPM_INSTALL_TIMEOUT,
                check=False,
            )
            if result.returncode != 0 or not _installed(staging):
                pytest.fail(
                    f"`npm install {PACKAGE}` failed (exit {result.returncode}); tests that "
                    f"run Graphile Worker for Node need the npm registry once.\n"
                    f"{result.stdout}\n{result.stderr}",
                    pytrace=False,
                )
            if install_dir.exists():
                shutil.rmtree(install_dir)
            staging.rename(install_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
