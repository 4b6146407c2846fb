"""The benchmark's command line and the Node preset it writes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from benchmarks._config import RESULTS, BenchConfig, parse_config
from benchmarks._database import DEFAULT_SERVER_URL, server_url, with_database
from benchmarks._node import TASK_DIRECTORY, render_config, worker_options
from benchmarks._python import PythonSide
from sqlalchemy_graphile.errors import ConfigurationError


def test_defaults_fit_a_small_machine() -> None:
    config = parse_config([])
    assert config.jobs == 20_000
    assert config.processes == (1, 2)
    assert config.concurrency == 24
    assert config.latency_samples == 500
    assert config.modes == ("unbatched", "batched")
    assert config.sides == ("ours", "node")
    assert config.soak is None
    assert config.output_path == RESULTS / "latest.json"


def test_flags_from_the_issue() -> None:
    config = parse_config(
        shlex.split(
            "--jobs 200 --processes 1 2 3 --concurrency 4 --latency-samples 20 "
            "--json out.json --modes batched --sides node"
        )
    )
    assert (config.jobs, config.processes, config.concurrency) == (200, (1, 2, 3), 4)
    assert config.latency_samples == 20
    assert config.modes == ("batched",)
    assert config.sides == ("node",)
    assert config.output_path == Path("out.json")


def test_asynchronous_release_commit_flag_makes_a_variant_run() -> None:
    assert parse_config([]).variants is False
    config = parse_config(["--asynchronous-release-commit"])
    assert config.asynchronous_release_commit is True
    assert config.variants is True
    with pytest.raises(SystemExit):
        parse_config(["--asynchronous-release-commit", "--soak", "1000000"])


def test_plugins_flag() -> None:
    assert parse_config([]).plugins == ()
    assert parse_config(["--plugins", "hooks", "tracing"]).plugins == ("hooks", "tracing")


def test_soak_flags() -> None:
    config = parse_config(["--soak", "1000000"])
    assert (config.soak, config.soak_baseline, config.soak_mode) == (
        1_000_000,
        100_000,
        "unbatched",
    )
    assert config.output_path == RESULTS / "soak.json"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"jobs": 0}, "--jobs must be at least 1"),
        ({"concurrency": -1}, "--concurrency must be at least 1"),
        ({"latency_samples": 0}, "--latency-samples must be at least 1"),
        ({"latency_warmup": -1}, "--latency-warmup must be at least 0"),
        ({"processes": ()}, "--processes needs"),
        ({"processes": (1, 0)}, "--processes needs"),
        ({"processes": (2, 2)}, "twice"),
        ({"modes": ("fast",)}, "'fast' is not one of unbatched, batched"),
        ({"modes": ()}, "--modes needs at least one"),
        ({"sides": ("ours", "ours")}, "--sides lists a value twice"),
        ({"sides": ("rust",)}, "'rust' is not one of ours, node"),
        ({"soak_mode": "x"}, "--soak-mode"),
        ({"loop": "trio"}, "--loop"),
        ({"timeout": 0.0}, "--timeout"),
        ({"soak": 10, "soak_baseline": 10}, "must be above --soak-baseline"),
        ({"database_url": "mysql://root@localhost/db"}, "needs PostgreSQL"),
        ({"database_url": "not a url"}, "not a database URL"),
        ({"plugins": ("fast",)}, "'fast' is not one of hooks, tracing"),
        ({"plugins": ("hooks", "hooks")}, "--plugins lists a value twice"),
        ({"plugins": ("hooks",), "soak": 200_000}, "not the soak"),
        ({"enqueue": "bulk"}, "'bulk' is not one of jobs, ids, copy"),
    ],
)
def test_bad_options_raise_configuration_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        BenchConfig(**fields)  # type: ignore[arg-type]


def test_the_enqueue_method_reaches_our_side_only_when_not_the_default() -> None:
    assert parse_config([]).enqueue == "jobs"
    assert parse_config(["--enqueue", "copy"]).enqueue == "copy"
    url = "postgresql://h/d"
    assert PythonSide("asyncio").enqueue_command(url, 3)[-3:] == ["enqueue", url, "3"]
    copy = PythonSide("asyncio", enqueue="copy").enqueue_command(url, 3)
    assert copy[-5:] == ["enqueue", url, "3", "--method", "copy"]


def test_bad_flags_exit_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--jobs", "0"])
    assert exit_info.value.code == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_server_url_defaults_and_drops_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert server_url() == DEFAULT_SERVER_URL
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app:secret@db:5433/app")
    assert server_url() == "postgresql://app:secret@db:5433/app"
    assert server_url("postgres://u@h/d") == "postgresql://u@h/d"
    assert with_database("postgresql://u@h:1/d", "other") == "postgresql://u@h:1/other"


def test_node_worker_options_per_mode() -> None:
    url = "postgresql://postgres@127.0.0.1:5432/x"
    plain = worker_options(url, 24, "unbatched", with_tasks=True)
    assert plain == {
        "connectionString": url,
        "concurrentJobs": 24,
        "maxPoolSize": 25,
        "taskDirectory": str(TASK_DIRECTORY),
    }
    batched = worker_options(url, 4, "batched", with_tasks=False)
    assert batched == {
        "connectionString": url,
        "concurrentJobs": 4,
        "maxPoolSize": 5,
        "localQueue": {"size": 500, "refetchDelay": {"durationMs": 10}},
        "completeJobBatchDelay": 0,
        "failJobBatchDelay": 0,
    }


def test_node_task_directory_holds_the_trivial_task() -> None:
    assert (TASK_DIRECTORY / "log_if_999.js").is_file()


def test_rendered_config_is_a_preset_with_the_options_as_json() -> None:
    options = {"connectionString": "postgresql://u@h/d'; process.exit(1); '", "concurrentJobs": 2}
    text = render_config(options)
    prefix = "module.exports = "
    assert prefix in text
    body = text.split(prefix, 1)[1].rstrip().removesuffix(";")
    assert json.loads(body) == {"worker": options}
