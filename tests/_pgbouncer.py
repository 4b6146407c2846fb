"""A real PgBouncer in front of the test server, for tests of what a pooler changes.

:func:`pgbouncer` starts one on a free port with the given ``pool_mode``, trusting every
user like the test server does, and stops it on the way out. The ``pgbouncer`` program comes
from the Debian package of that name (``.ci/run`` installs it); without it the tests that
need it are skipped, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: How long PgBouncer may take to accept connections.
START_SECONDS = 30.0


def _program() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def pgbouncer(server_host: str, server_port: int, *, pool_mode: str) -> Iterator[int]:
    """Run PgBouncer in ``pool_mode`` in front of ``server_host:server_port``; yields the
    port it listens on (127.0.0.1)."""
    program = _program()
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="sg-pgbouncer-") as name:
        folder = Path(name)
        folder.chmod(0o777)  # PgBouncer refuses to run as root; it runs as postgres then
        (folder / "users.txt").write_text('"postgres" ""\n', encoding="utf-8")
        config = folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={server_host} port={server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
            f"pool_mode = {pool_mode}\nmax_client_conn = 100\ndefault_pool_size = 10\n"
            f"logfile = {folder / 'pgbouncer.log'}\n",
            encoding="utf-8",
        )
        for path in folder.iterdir():
            path.chmod(0o666)
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        process = subprocess.Popen(
            [program, *user, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_until_listening(port, process)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr is not None else ""
            raise RuntimeError(f"pgbouncer exited with status {process.returncode}: {error}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
