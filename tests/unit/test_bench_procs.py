"""How the benchmark runs and measures child processes (plain Python children, no database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks._procs import (
    Finished,
    MeasurementError,
    last_json_line,
    result_field,
    run_one,
    run_together,
    stop,
)

ENV = dict(os.environ)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_children_report_output_and_peak_rss(tmp_path: Path) -> None:
    # The second child touches 64 MiB, so its peak RSS must be at least that.
    commands = [
        _python("print('{\"n\": 1}')"),
        # It holds the memory for a while: peaks are read while a child runs.
        _python(
            "import time; b = bytearray(64 * 1024 * 1024); time.sleep(0.2); print('{\"n\": 2}')"
        ),
    ]
    batch = run_together(commands, env=ENV, cwd=tmp_path, logs=tmp_path / "logs", timeout=60)
    assert [last_json_line(c.stdout) for c in batch.children] == [{"n": 1}, {"n": 2}]
    assert batch.children[1].peak_rss >= 64 * 1024 * 1024
    assert batch.max_peak_rss == batch.children[1].peak_rss
    assert batch.seconds == max(c.seconds for c in batch.children)
    assert all(c.returncode == 0 for c in batch.children)
    assert (tmp_path / "logs" / "1.stdout").read_text().strip() == '{"n": 2}'


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_a_small_child_is_not_charged_with_the_memory_of_its_parent(tmp_path: Path) -> None:
    # wait4 would report at least this process's own peak for any child it forks.
    ballast = bytearray(150 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])
    batch = run_together(
        [
            _python("pass"),
            _python(
                "import time; x = bytearray(60 * 1024 * 1024); x[::4096] = b'y' * len(x[::4096]);"
                " time.sleep(0.2)"
            ),
        ],
        env=ENV,
        cwd=tmp_path,
        logs=tmp_path / "logs",
        timeout=30,
    )
    small, large = (child.peak_rss / 2**20 for child in batch.children)
    assert small < 60
    assert 60 <= large < 140
    del ballast


def test_a_failing_child_raises_with_its_stderr(tmp_path: Path) -> None:
    code = "import sys; print('ImportError: no Worker', file=sys.stderr); sys.exit(3)"
    with pytest.raises(
        MeasurementError,
        match=r"exited with status 3 \(ImportError: no Worker\):\n.*ImportError: no Worker",
    ):
        run_one(_python(code), env=ENV, cwd=tmp_path, logs=tmp_path / "logs", timeout=60)


def test_a_hung_child_is_killed_at_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(MeasurementError, match="did not finish within"):
        run_one(
            _python("import time; time.sleep(600)"),
            env=ENV,
            cwd=tmp_path,
            logs=tmp_path / "logs",
            timeout=0.5,
        )


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"a": 1}\n', {"a": 1}),
        ('log line\n{"a": 1}\n\n', {"a": 1}),
        ('{"a": 1}\n{"b": 2}\n', {"b": 2}),
    ],
)
def test_last_json_line(output: str, expected: dict[str, int]) -> None:
    assert last_json_line(output) == expected


@pytest.mark.parametrize("output", ["", "no json here\n", '{"a": 1}\ntrailing text\n', "[1, 2]\n"])
def test_last_json_line_refuses_anything_else(output: str) -> None:
    with pytest.raises(MeasurementError, match="expected a JSON object"):
        last_json_line(output)


def test_result_field_names_the_missing_key() -> None:
    child = Finished(("node", "x.js"), 0, 0.1, 1, '{"call_s": 0.5}\n', "")
    assert result_field(child, "call_s") == 0.5
    with pytest.raises(MeasurementError, match="printed no 'samples_ms'"):
        result_field(child, "samples_ms")


def _started(code: str) -> subprocess.Popen[bytes]:
    """A child running ``code`` after it printed a line, so its signal handlers are set."""
    process = subprocess.Popen(_python(code), stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    return process


def test_stop_sends_sigterm_and_reaps(tmp_path: Path) -> None:
    process = _started(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    with process:
        returncode, peak = stop(process, timeout=60)
    assert returncode == 7
    assert process.returncode == 7
    assert peak > 0


def test_stop_reaps_a_child_that_already_exited() -> None:
    process = _started("print('ready', flush=True)")
    child = psutil.Process(process.pid)
    deadline = time.monotonic() + 30
    while child.status() != psutil.STATUS_ZOMBIE:  # exited, not reaped yet
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    with process:
        assert stop(process, timeout=60)[0] == 0


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    process = _started(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    with process, pytest.raises(MeasurementError, match="did not stop within"):
        stop(process, timeout=0.5)
    assert process.returncode == -signal.SIGKILL
