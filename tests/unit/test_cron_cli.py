"""The ``--crontab`` option of ``run``: parsing, and reading the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlalchemy_graphile import ConfigurationError, CrontabError
from sqlalchemy_graphile.cli import EXIT_USAGE, main
from sqlalchemy_graphile.cli._parser import parse_args
from sqlalchemy_graphile.cli._run import load_crontab


def test_crontab_option() -> None:
    assert parse_args(["run", "--tasks", "m"]).crontab is None
    assert parse_args(["run", "--tasks", "m", "--crontab", "jobs.crontab"]).crontab == (
        "jobs.crontab"
    )


def test_crontab_and_once_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--tasks", "m", "--once", "--crontab", "crontab"]) == EXIT_USAGE
    assert "--crontab cannot be used with --once" in capsys.readouterr().err


def test_load_crontab(tmp_path: Path) -> None:
    path = tmp_path / "crontab"
    path.write_text("# nightly\n0 3 * * * cleanup ?fill=6h\n", encoding="utf-8")
    (item,) = load_crontab(str(path))
    assert (item.task, item.options.backfill_period.total_seconds()) == ("cleanup", 6 * 3600)


def test_load_crontab_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigurationError, match=r"cannot read the crontab file .*missing'"):
        load_crontab(str(missing))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigurationError, match="it is not UTF-8 text"):
        load_crontab(str(binary))
    bad = tmp_path / "bad"
    bad.write_text("0 3 * * * ok\n0 3 * * * two words\n", encoding="utf-8")
    with pytest.raises(CrontabError, match=r"in the crontab file .*bad': Invalid command") as e:
        load_crontab(str(bad))
    assert e.value.line == 2
