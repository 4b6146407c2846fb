"""Graphile Worker (Node) next to our schema: the ``node`` and ``runs`` fixtures.

``node`` (session scope) is a :class:`NodeGraphileWorker` bound to a cached install of the
npm package ``graphile-worker@0.17``.

Blocking runs, for synchronous tests:

``node.run_script(js_source, db_url, timeout=60, *, args=None, env=None, check=True)``
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

Processes, for asynchronous tests (a worker of ours can run meanwhile):

``async with node.start(js_source, db_url, *, args=None, env=None) as process:``
    Starts the script in the background; a :class:`NodeProcess`. Every stdout line must be
    JSON; ``await process.message(predicate, what)`` waits for one, ``process.messages``
    has them all, ``await process.send(value)`` writes one to stdin, ``await
    process.finish()`` closes stdin (by convention the script's "stop" signal), waits for
    the script to exit (with status 0, or ``status=``) and returns the messages, and
    ``await process.kill()`` sends SIGKILL. A process still running when the block ends
    is killed.

``await node.execute(js_source, db_url, *, args=None, env=None, within=60, status=0)``
    Runs the script to completion (stdin closed), checks its exit status and returns its
    JSON messages.

``async with node.utils(db_url) as utils:``
    A :class:`NodeUtils`: one Node process holding ``makeWorkerUtils``, answering
    ``await utils.call("addJob", "task", {"a": 1}, {"jobKey": "k"})`` (any WorkerUtils
    method, camelCase options, datetimes sent as ISO text) and ``await utils.query(sql,
    *values)``, so Node calls interleave with Python ones at no start-up cost.

Every script can ``require("sg_compat")`` (``tests/compat/node/sg_compat.js``): worker
options for the test database with Graphile Worker's log on stderr, ``args`` (the JSON value
passed as ``args=``, through ``$SG_COMPAT_ARGS``), ``emit(value)``, ``main(fn)``,
``stdinClosed()``, ``command(name)`` (resolved when the test sends ``{"command": name}``)
and ``recorded(body)``, which wraps a task so each run is logged in the ``compat.runs``
table. Example::

    async def test_something(node: NodeGraphileWorker, db_url: str) -> None:
        (result,) = await node.execute(
            '''
            const { makeWorkerUtils } = require("graphile-worker");
            const sg = require("sg_compat");
            sg.main(async () => {
              const utils = await makeWorkerUtils(sg.options());
              try {
                return { id: (await utils.addJob("hello", sg.args)).id };
              } finally {
                await utils.release();
              }
            });
            ''',
            db_url,
            args={"name": "Ada"},
        )

Every run starts in an empty temporary directory (so no ``graphile.config.*`` is picked up),
and ``GRAPHILE_WORKER_SCHEMA`` is removed from the inherited environment unless ``env`` sets
it.

``runs`` (function scope) creates ``compat.runs`` in the ``db_url`` database and returns a
:class:`~tests.compat._support.RunLog`: Python tasks record their runs there too, and tests
read the runs of both runtimes back, each stamped with the server's ``clock_timestamp()``.

The package is installed and cached as :mod:`tests._node` describes. Without Node.js and
npm on ``PATH`` the compatibility tests are skipped with one line saying why, except in CI
(``CI=true``), where that fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests._node import node_install
from tests.compat._support import RunLog, create_runs_table

#: Our own Node modules (``sg_compat``, ``utils_server.js``), also on ``NODE_PATH``.
SCRIPTS = Path(__file__).with_name("node")


def _to_json(value: Any) -> str:
    def default(item: object) -> str:
        if isinstance(item, datetime):
            return item.isoformat()
        raise TypeError(f"{type(item).__name__} has no JSON form")

    return json.dumps(value, default=default)


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
        args: Any = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``js_source`` with ``node``; see the module documentation."""
        return self._run([self.node, self._script(js_source)], db_url, timeout, args, env, check)

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
        return self._run(
            [command, *args, "--connection", db_url], db_url, timeout, None, env, check
        )

    @staticmethod
    def json_result(result: subprocess.CompletedProcess[str]) -> Any:
        """The JSON value a script printed as its last line of output."""
        lines = result.stdout.strip().splitlines()
        assert lines, f"the script printed nothing; stderr:\n{result.stderr}"
        return json.loads(lines[-1])

    @contextlib.asynccontextmanager
    async def start(
        self,
        js_source: str,
        db_url: str,
        *,
        args: Any = None,
        env: dict[str, str] | None = None,
    ) -> AsyncIterator[NodeProcess]:
        """Run ``js_source`` in the background; see the module documentation."""
        process = await asyncio.create_subprocess_exec(
            self.node,
            self._script(js_source),
            cwd=tempfile.mkdtemp(dir=self.work_dir),
            env=self._environment(db_url, args, env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        running = NodeProcess(process)
        try:
            yield running
        finally:
            await running.kill()

    async def execute(
        self,
        js_source: str,
        db_url: str,
        *,
        args: Any = None,
        env: dict[str, str] | None = None,
        within: float = 60,
        status: int = 0,
    ) -> list[Any]:
        """Run ``js_source`` until it exits with ``status``; return its JSON messages."""
        async with self.start(js_source, db_url, args=args, env=env) as process:
            return await process.finish(within, status=status)

    @contextlib.asynccontextmanager
    async def utils(self, db_url: str) -> AsyncIterator[NodeUtils]:
        """Graphile Worker's ``makeWorkerUtils`` in a Node process; see :class:`NodeUtils`."""
        source = (SCRIPTS / "utils_server.js").read_text()
        async with self.start(source, db_url) as process:
            await process.message(lambda m: m.get("ready") is True, "the utils to connect")
            yield NodeUtils(process)
            await process.finish()

    def _script(self, js_source: str) -> str:
        handle, name = tempfile.mkstemp(suffix=".js", dir=self.work_dir)
        with os.fdopen(handle, "w") as script:
            script.write(js_source)
        return name

    def _environment(self, db_url: str, args: Any, env: dict[str, str] | None) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k != "GRAPHILE_WORKER_SCHEMA"}
        environment.update(
            {
                "NODE_PATH": os.pathsep.join((str(self.node_modules), str(SCRIPTS))),
                "DATABASE_URL": db_url,
                "SG_COMPAT_ARGS": _to_json(args),
                **(env or {}),
            }
        )
        return environment

    def _run(
        self,
        command: list[str],
        db_url: str,
        timeout: float,
        args: Any,
        env: dict[str, str] | None,
        check: bool,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command,
            cwd=tempfile.mkdtemp(dir=self.work_dir),
            env=self._environment(db_url, args, env),
            stdin=subprocess.DEVNULL,
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


class NodeProcess:
    """A Node script running in the background (:meth:`NodeGraphileWorker.start`).

    Its stdout is read as JSON lines into :attr:`messages`; stderr (Graphile Worker's log)
    is kept for :attr:`stderr` and for the message of any assertion about the process.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.messages: list[Any] = []
        self._stderr: list[str] = []
        self._changed = asyncio.Event()
        self._readers = (
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the script has not exited yet."""
        return self._process.returncode is None

    @property
    def stderr(self) -> str:
        """What the script wrote to stderr so far."""
        return "".join(self._stderr)

    async def message(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, within: float = 30
    ) -> dict[str, Any]:
        """The first JSON object message for which ``predicate`` is true, waiting up to
        ``within`` seconds for it; ``AssertionError`` if the script exits without one."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self._changed.clear()
                    for message in self.messages:
                        if isinstance(message, dict) and predicate(message):
                            return message
                    if self._readers[0].done():
                        await self._process.wait()
                        raise AssertionError(self._describe(f"exited before {what}"))
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(self._describe(f"gave no sign of {what} in {within} s")) from None

    async def send(self, value: Any) -> None:
        """Write ``value`` to the script's stdin as one JSON line."""
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(_to_json(value).encode() + b"\n")
        await stdin.drain()

    async def finish(self, within: float = 60, *, status: int = 0) -> list[Any]:
        """Close stdin, wait for the script to exit with ``status``, return its messages."""
        self._close_stdin()
        try:
            async with asyncio.timeout(within):
                await self._process.wait()
                await asyncio.gather(*self._readers)
        except TimeoutError:
            raise AssertionError(self._describe(f"did not exit within {within} s")) from None
        if self._process.returncode != status:
            raise AssertionError(self._describe(f"exited with {self._process.returncode}"))
        return self.messages

    async def kill(self) -> None:
        """SIGKILL the script (if it still runs) and wait for it."""
        if self._process.returncode is None:
            self._process.kill()
        self._close_stdin()
        await self._process.wait()
        await asyncio.gather(*self._readers)

    def _close_stdin(self) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()

    async def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        async for line in self._process.stdout:
            text = line.decode()
            try:
                self.messages.append(json.loads(text))
            except ValueError:
                self._stderr.append(f"(stdout, not JSON) {text}")
            self._changed.set()
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        async for line in self._process.stderr:
            self._stderr.append(line.decode())

    def _describe(self, what: str) -> str:
        return (
            f"the Node script {what}\n--- messages ---\n"
            + "\n".join(_to_json(m) for m in self.messages)
            + f"\n--- stderr ---\n{self.stderr}"
        )


class NodeError(Exception):
    """A WorkerUtils call failed in Node; ``code`` is the SQLSTATE, if any."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


class NodeUtils:
    """Graphile Worker's ``makeWorkerUtils`` in a Node process (``node/utils_server.js``).

    Rows come back as Node returns them: ids as strings, timestamps as ISO text.
    """

    def __init__(self, process: NodeProcess) -> None:
        self._process = process
        self._ids = itertools.count(1)

    async def call(self, method: str, *args: Any, within: float = 30) -> Any:
        """``await utils[method](...args)`` in Node; :class:`NodeError` if it throws."""
        request = next(self._ids)
        await self._process.send({"id": request, "method": method, "args": args})
        reply = await self._process.message(
            lambda m: m.get("id") == request, f"an answer to {method}", within
        )
        if "error" in reply:
            raise NodeError(reply["error"]["message"], reply["error"]["code"])
        return reply["result"]

    async def add_job(self, identifier: str, payload: Any = None, **spec: Any) -> dict[str, Any]:
        """``utils.addJob(identifier, payload, spec)``; ``spec`` keys are Node's (camelCase)."""
        job: dict[str, Any] = await self.call("addJob", identifier, payload, spec)
        return job

    async def query(self, sql: str, *values: Any) -> list[dict[str, Any]]:
        """Run ``sql`` on one of the utils' connections; the rows as objects."""
        rows: list[dict[str, Any]] = await self.call("query", sql, values)
        return rows


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> NodeGraphileWorker:
    """Graphile Worker 0.17 for Node, installed once and cached (see the module docstring)."""
    install = node_install()
    return NodeGraphileWorker(install.node, install.install_dir, tmp_path_factory.mktemp("node"))


@pytest.fixture
def runs(db_url: str, db: psycopg.Connection) -> RunLog:
    """``compat.runs`` in the test database; see the module documentation."""
    create_runs_table(db)
    return RunLog(db_url)
