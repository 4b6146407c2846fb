"""Worker processes in tests: wait for a condition while the process runs, stop it with
SIGTERM, and never leave it behind. Every failure shows the process's log."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: How long a test waits for a worker process to reach a state or to exit.
DEADLINE_SECONDS = 60.0

Process = subprocess.Popen[bytes]


def wait_until(
    condition: Callable[[], object],
    process: Process,
    log_path: Path,
    *,
    within: float = DEADLINE_SECONDS,
) -> None:
    """Poll ``condition()`` every 0.1 s until it is true; fail if the process exits first or
    ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while not condition():
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)


def terminate(process: Process, log_path: Path, *, within: float = DEADLINE_SECONDS) -> int:
    """Send SIGTERM to the process, which must still be running, and return its exit
    status."""
    assert process.poll() is None, log_path.read_text()
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=within)


@contextmanager
def reaped(process: Process) -> Iterator[Process]:
    """Kill and reap the process on the way out if it still runs (the test failed)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
