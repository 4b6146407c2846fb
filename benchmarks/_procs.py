"""Running measured child processes: wall time, exit status, peak RSS and output.

Each child writes its stdout and stderr to files (no pipes to fill up). The peak resident
set size is the child's own high-water mark (``VmHWM`` in ``/proc/PID/status``), read every
5 ms while it runs (a peak in its last few milliseconds can be missed). The figure ``wait4``
reports is no use on Linux for a small child: ``exec`` folds the high-water mark of the
memory the child was forked from (this harness, about 65 MiB) into it. Where ``/proc`` is
missing, ``wait4``'s figure is used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._stats import maxrss_bytes


class MeasurementError(Exception):
    """A measurement could not be taken: a child failed, hung or printed nonsense."""


@dataclass(frozen=True)
class Finished:
    """One child that has exited."""

    argv: tuple[str, ...]
    returncode: int
    seconds: float
    peak_rss: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Batch:
    """Children started together: ``seconds`` from the first start to the last exit."""

    seconds: float
    children: tuple[Finished, ...]

    @property
    def max_peak_rss(self) -> int:
        """The largest peak RSS among the children, in bytes."""
        return max(child.peak_rss for child in self.children)


#: Seconds between two readings of a child's high-water mark.
SAMPLE_INTERVAL = 0.005


def read_high_water_mark(pid: int) -> int | None:
    """The peak resident set size of process ``pid`` so far, in bytes (``VmHWM``), or
    ``None`` when it cannot be read (no ``/proc``, the process has exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class _HighWaterMark:
    """Reads a running child's high-water mark every :data:`SAMPLE_INTERVAL` seconds, in a
    thread of its own, until :meth:`stop` (called once the child has exited and before it
    is reaped, so its pid cannot have been reused)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stopped = threading.Event()
        self.peak: int | None = None
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while True:
            value = read_high_water_mark(self._pid)
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)
            if self._stopped.wait(SAMPLE_INTERVAL):
                return

    def stop(self) -> int | None:
        self._stopped.set()
        self._thread.join()
        return self.peak


def _reap(process: subprocess.Popen[bytes]) -> tuple[int, float, int]:
    high_water = _HighWaterMark(process.pid)
    # Wait for the exit without reaping: the pid stays this child's while sampling stops.
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    ended = time.perf_counter()
    sampled = high_water.stop()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    peak = sampled if sampled is not None else maxrss_bytes(usage.ru_maxrss, sys.platform)
    return process.returncode, ended, peak


def run_together(
    commands: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    logs: Path,
    timeout: float,
) -> Batch:
    """Start every command at once, wait for all of them and measure.

    Raises :class:`MeasurementError` if one exits with a non-zero status (with the tail of
    its stderr) or if they have not all exited after ``timeout`` seconds (then all of them
    are killed).
    """
    logs.mkdir(parents=True, exist_ok=True)
    outputs: list[tuple[Path, Path]] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        reaped: dict[Future[tuple[int, float, int]], subprocess.Popen[bytes]] = {}
        for index, argv in enumerate(commands):
            out, err = logs / f"{index}.stdout", logs / f"{index}.stderr"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                process = subprocess.Popen(
                    list(argv), stdout=stdout, stderr=stderr, env=dict(env), cwd=cwd
                )
            outputs.append((out, err))
            reaped[pool.submit(_reap, process)] = process
        _, pending = wait(reaped, timeout=timeout)
        for future in pending:  # not reaped yet, so the pid is still this child's
            os.kill(reaped[future].pid, signal.SIGKILL)
        if pending:
            wait(reaped)
            raise MeasurementError(
                f"{_name(commands[0])} did not finish within {timeout:.0f} s; killed"
            )
    children = []
    for argv, (out, err), future in zip(commands, outputs, reaped, strict=True):
        returncode, ended, peak = future.result()
        child = Finished(
            argv=tuple(argv),
            returncode=returncode,
            seconds=ended - started,
            peak_rss=peak,
            stdout=out.read_text(errors="replace"),
            stderr=err.read_text(errors="replace"),
        )
        if returncode != 0:
            raise MeasurementError(
                f"{_name(child.argv)} exited with status {returncode} "
                f"({_last_line(child.stderr)}):\n{tail(child.stderr)}"
            )
        children.append(child)
    return Batch(seconds=max(c.seconds for c in children), children=tuple(children))


def run_one(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, logs: Path, timeout: float
) -> Finished:
    """Run one command to completion; the same errors as :func:`run_together`."""
    return run_together([argv], env=env, cwd=cwd, logs=logs, timeout=timeout).children[0]


def last_json_line(output: str) -> dict[str, Any]:
    """The last line of ``output`` parsed as a JSON object (how children report results).

    Raises :class:`MeasurementError` when there is no such line.
    """
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            break
        if isinstance(value, dict):
            return value
        break
    raise MeasurementError(
        f"expected a JSON object as the last line of output, got:\n{tail(output)}"
    )


def result_field(child: Finished, key: str) -> Any:
    """Field ``key`` of the JSON result ``child`` printed last; :class:`MeasurementError`
    if it printed none or the field is missing."""
    result = last_json_line(child.stdout)
    if key not in result:
        raise MeasurementError(f"{_name(child.argv)} printed no {key!r}: {result!r}")
    return result[key]


def tail(text: str, lines: int = 25) -> str:
    """The last ``lines`` lines of ``text``, indented, for error messages."""
    kept = text.strip().splitlines()[-lines:] or ["(no output)"]
    return "\n".join("    " + line for line in kept)


def _name(argv: Sequence[str]) -> str:
    """The program and its first short arguments, leaving out URLs and JSON."""
    shown = [a for a in argv[1:] if "://" not in a and not a.startswith("{")][:4]
    return " ".join([Path(argv[0]).name, *shown])


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else "no output"


def stop(process: subprocess.Popen[bytes], *, timeout: float) -> tuple[int, int]:
    """Send SIGTERM to a child we started and reap it: ``(exit code, peak RSS in bytes)``.

    Kills it and raises :class:`MeasurementError` if it has not exited after ``timeout``
    seconds.
    """
    # os.kill, not Popen.send_signal: that polls, and could reap the child before wait4.
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, maxrss_bytes(usage.ru_maxrss, sys.platform)
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            raise MeasurementError(f"the worker did not stop within {timeout:.0f} s of SIGTERM")
        time.sleep(0.05)
