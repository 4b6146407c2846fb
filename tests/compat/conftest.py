"""Graphile Worker (Node) next to our schema: the ``node`` fixture.

``node`` (session scope) is a :class:`NodeGraphileWorker` bound to a cached install of the
npm package ``graphile-worker@0.17``:

``node.run_script(js_source, db_url, timeout=60, *, env=None, check=True)``
    Writes ``js_source`` to a temporary ``.js`` file and runs it with ``node``.
    ``require("graphile-worker")`` resolves to the cached install (``NODE_PATH``), and
    ``process.env.DATABASE_URL`` is ``db_url``. Returns the ``subprocess.CompletedProcess``
    (text mode). With ``check=True`` a non-zero exit raises ``AssertionError`` showing both
    output streams. Graphile Worker logs to the console too, so a script that reports a
    result should print it as one line of JSON, last; :meth:`NodeGraphileWorker.json_result`
    reads it back.

``node.cli(*args, db_url, timeout=60, env=None, check=True)``
    Runs the ``graphile-worker`` command with ``args`` plus ``--connection db_url``.

``node.version``
    The installed package version (``0.17.x``).

Every run starts in an empty temporary directory (so no ``graphile.config.*`` is picked up),
and ``GRAPHILE_WORKER_SCHEMA`` is removed from the inherited environment unless ``env`` sets
it. Example::

    def test_something(node: NodeGraphileWorker, db_url: str) -> None:
        result = node.run_script(
            '''
            const { makeWorkerUtils } = require("graphile-worker");
            (async () => {
              const utils = await makeWorkerUtils({ connectionString: process.env.DATABASE_URL });
              const job = await utils.addJob("hello", { name: "Ada" });
              await utils.release();
              console.log(JSON.stringify({ id: job.id }));
            })().catch((e) => { console.error(e); process.exit(1); });
            ''',
            db_url,
        )
        job_id = node.json_result(result)["id"]

The package is installed with ``npm install --no-audit --no-fund graphile-worker@0.17`` into
``~/.cache/sqlalchemy-graphile/node-graphile-worker-0.17`` (``$SG_NODE_CACHE_DIR`` replaces
``~/.cache/sqlalchemy-graphile``) the first time it is needed, under a file lock so parallel
test runs share one install, and reused afterwards. Node.js and npm must be on ``PATH``:
without them the compatibility tests fail with a message saying so; they are never skipped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

PACKAGE = "graphile-worker@0.17"
MAJOR_MINOR = "0.17."
CACHE_NAME = "node-graphile-worker-0.17"
NPM_INSTALL_TIMEOUT = 600


def cache_directory() -> Path:
    """Where the npm package is installed (created on first use)."""
    parent = os.environ.get("SG_NODE_CACHE_DIR") or "~/.cache/sqlalchemy-graphile"
    return Path(parent).expanduser() / CACHE_NAME


class NodeGraphileWorker:
    """Runs Node scripts and the ``graphile-worker`` CLI from one cached npm install."""

    def __init__(self, node: str, install_dir: Path, work_dir: Path) -> None:
        self.node = node
        self.node_modules = install_dir / "node_modules"
        self.work_dir = work_dir
        package = json.loads((self.node_modules / "graphile-worker" / "package.json").read_text())
        self.version: str = package["version"]

    def run_script(
        self,
        js_source: str,
        db_url: str,
        timeout: float = 60,
        *,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``js_source`` with ``node``; see the module documentation."""
        handle, name = tempfile.mkstemp(suffix=".js", dir=self.work_dir)
        with os.fdopen(handle, "w") as script:
            script.write(js_source)
        return self._run([self.node, name], db_url, timeout, env, check)

    def cli(
        self,
        *args: str,
        db_url: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``graphile-worker *args --connection db_url``."""
        command = str(self.node_modules / ".bin" / "graphile-worker")
        return self._run([command, *args, "--connection", db_url], db_url, timeout, env, check)

    @staticmethod
    def json_result(result: subprocess.CompletedProcess[str]) -> Any:
        """The JSON value a script printed as its last line of output."""
        lines = result.stdout.strip().splitlines()
        assert lines, f"the script printed nothing; stderr:\n{result.stderr}"
        return json.loads(lines[-1])

    def _run(
        self,
        command: list[str],
        db_url: str,
        timeout: float,
        env: dict[str, str] | None,
        check: bool,
    ) -> subprocess.CompletedProcess[str]:
        environment = {k: v for k, v in os.environ.items() if k != "GRAPHILE_WORKER_SCHEMA"}
        environment.update(
            {"NODE_PATH": str(self.node_modules), "DATABASE_URL": db_url, **(env or {})}
        )
        run_dir = tempfile.mkdtemp(dir=self.work_dir)
        result = subprocess.run(
            command,
            cwd=run_dir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{command[0]} exited with {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result


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
                    f"`npm install {PACKAGE}` failed (exit {result.returncode}); the "
                    f"compatibility tests need the npm registry once.\n{result.stdout}\n"
                    f"{result.stderr}",
                    pytrace=False,
                )
            if install_dir.exists():
                shutil.rmtree(install_dir)
            staging.rename(install_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeGraphileWorker:
    """Graphile Worker 0.17 for Node, installed once and cached (see the module docstring)."""
    executable = shutil.which("node")
    npm = shutil.which("npm")
    if executable is None or npm is None:
        missing = [name for name, path in (("node", executable), ("npm", npm)) if path is None]
        pytest.fail(
            "the compatibility tests run Graphile Worker for Node, but "
            f"{' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} not on PATH: "
            "install Node.js 18 or newer with npm (e.g. `apt-get install nodejs npm`)",
            pytrace=False,
        )
    install_dir = cache_directory()
    _install(npm, install_dir)
    return NodeGraphileWorker(executable, install_dir, tmp_path_factory.mktemp("node"))
