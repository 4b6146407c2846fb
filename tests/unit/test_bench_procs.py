"""How the benchmark runs and measures child processes (plain Python children, no database)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from benchmarks._procs import (
    Finished,
    MeasurementError,
    last_json_line,
    result_field,
    run_one,
    run_together,
)

ENV = dict(os.environ)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_children_report_output_and_peak_rss(tmp_path: Path) -> None:
    # The second child touches 64 MiB, so its peak RSS must be at least that.
    commands = [
        _python("print('{\"n\": 1}')"),
        _python("b = bytearray(64 * 1024 * 1024); print('{\"n\": 2}')"),
    ]
    batch = run_together(commands, env=ENV, cwd=tmp_path, logs=tmp_path / "logs", timeout=60)
    assert [last_json_line(c.stdout) for c in batch.children] == [{"n": 1}, {"n": 2}]
    assert batch.children[1].peak_rss >= 64 * 1024 * 1024
    assert batch.max_peak_rss == batch.children[1].peak_rss
    assert batch.seconds == max(c.seconds for c in batch.children)
    assert all(c.returncode == 0 for c in batch.children)
    assert (tmp_path / "logs" / "1.stdout").read_text().strip() == '{"n": 2}'


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
