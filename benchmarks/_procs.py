"""Running measured child processes: wall time, exit status, peak RSS and output.

Each child writes its stdout and stderr to files (no pipes to fill up). The peak resident
set size comes from ``wait4``, so it covers the whole life of the process, start-up
included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


def _reap(process: subprocess.Popen[bytes]) -> tuple[int, float, int]:
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.perf_counter()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, ended, maxrss_bytes(usage.ru_maxrss, sys.platform)


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
