"""Command-line options of ``python -m benchmarks``, parsed and checked."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy_graphile.errors import ConfigurationError

from ._database import server_url
from ._modes import ENQUEUE_METHODS, MODES
from ._node import default_install_dir
from ._pgqueuer import pgqueuer_installed
from ._plugins import PLUGIN_SETS
from ._python import REPO_ROOT, default_loop

RESULTS = REPO_ROOT / "benchmarks" / "results"
SIDE_NAMES = ("ours", "node", "pgqueuer")
#: What a run measures unless told otherwise; pgqueuer and batches of 12 are asked for.
DEFAULT_SIDES = ("ours", "node")
DEFAULT_MODES = ("unbatched", "batched")


@dataclass(frozen=True)
class BenchConfig:
    """Everything a run needs; invalid values raise :class:`ConfigurationError`."""

    jobs: int = 20_000
    processes: tuple[int, ...] = (1, 2)
    concurrency: int = 24
    latency_samples: int = 500
    latency_warmup: int = 50
    modes: tuple[str, ...] = DEFAULT_MODES
    sides: tuple[str, ...] = DEFAULT_SIDES
    json_path: Path | None = None
    markdown: bool = False
    database_url: str | None = None
    node_dir: Path | None = None
    loop: str = "auto"
    timeout: float = 600.0
    soak: int | None = None
    soak_baseline: int = 100_000
    soak_mode: str = "unbatched"
    metrics: bool = False
    plugins: tuple[str, ...] = ()
    #: How our side adds the enqueue run's jobs (:data:`ENQUEUE_METHODS`).
    enqueue: str = "jobs"
    #: Also run our worker with ``asynchronous_release_commit=True``, instead of Node.
    asynchronous_release_commit: bool = False
    #: pgqueuer's ``concurrency_limit`` on its entrypoint; ``None``: ``concurrency``.
    pgqueuer_limit: int | None = None

    def __post_init__(self) -> None:
        _at_least(1, jobs=self.jobs, concurrency=self.concurrency)
        _at_least(1, latency_samples=self.latency_samples)
        _at_least(0, latency_warmup=self.latency_warmup)
        if not self.processes or min(self.processes) < 1:
            raise ConfigurationError("--processes needs one or more counts of at least 1")
        if len(set(self.processes)) != len(self.processes):
            raise ConfigurationError("--processes lists a count twice")
        _distinct_choices("--modes", self.modes, MODES)
        _distinct_choices("--sides", self.sides, SIDE_NAMES)
        if "pgqueuer" in self.sides and not pgqueuer_installed():
            raise ConfigurationError(
                "--sides pgqueuer needs the pgqueuer package: pip install 'pgqueuer>=1.6'"
            )
        if self.pgqueuer_limit is not None:
            _at_least(0, pgqueuer_limit=self.pgqueuer_limit)
        _distinct_choices("--soak-mode", (self.soak_mode,), MODES)
        if self.loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigurationError(f"--loop must be auto, asyncio or uvloop, not {self.loop!r}")
        server_url(self.database_url)  # a bad URL is refused here, before any connection
        if self.timeout <= 0:
            raise ConfigurationError("--timeout must be positive")
        _distinct_choices("--enqueue", (self.enqueue,), ENQUEUE_METHODS)
        if self.plugins:
            _distinct_choices("--plugins", self.plugins, PLUGIN_SETS)
            if self.soak is not None:
                raise ConfigurationError("--plugins measures the comparison run, not the soak")
        if self.asynchronous_release_commit and self.soak is not None:
            raise ConfigurationError(
                "--asynchronous-release-commit measures the comparison run, not the soak"
            )
        if self.soak is not None:
            _at_least(1, soak_baseline=self.soak_baseline)
            if self.soak <= self.soak_baseline:
                raise ConfigurationError(
                    f"--soak ({self.soak}) must be above --soak-baseline ({self.soak_baseline})"
                )

    @property
    def variants(self) -> bool:
        """Whether this run measures variants of our worker against it instead of peers."""
        return bool(self.plugins) or self.asynchronous_release_commit

    @property
    def event_loop(self) -> str:
        """The event loop our worker runs on: ``loop``, with ``auto`` resolved."""
        return default_loop() if self.loop == "auto" else self.loop

    @property
    def node_install_dir(self) -> Path:
        """Where graphile-worker is (to be) installed."""
        return self.node_dir or default_install_dir()

    @property
    def output_path(self) -> Path:
        """Where the JSON goes: ``--json``, else ``benchmarks/results/{latest,soak}.json``."""
        if self.json_path is not None:
            return self.json_path
        return RESULTS / ("soak.json" if self.soak is not None else "latest.json")


def _at_least(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if value < minimum:
            flag = "--" + name.replace("_", "-")
            raise ConfigurationError(f"{flag} must be at least {minimum}, not {value}")


def _distinct_choices(flag: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    if not values:
        raise ConfigurationError(f"{flag} needs at least one of {', '.join(allowed)}")
    for value in values:
        if value not in allowed:
            raise ConfigurationError(f"{flag}: {value!r} is not one of {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ConfigurationError(f"{flag} lists a value twice")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m benchmarks``."""
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Throughput and add->start latency of this package's worker and of Node "
            "graphile-worker 0.17, measured in the same run on the same PostgreSQL server, "
            "each measurement on a fresh scratch database."
        ),
    )
    parser.add_argument("--jobs", type=int, default=defaults.jobs, help="N: jobs per run")
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=list(defaults.processes),
        help="P: worker processes; each value is a separate run",
    )
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="C: jobs per process"
    )
    parser.add_argument(
        "--latency-samples",
        type=int,
        default=defaults.latency_samples,
        help="add->start samples per mode",
    )
    parser.add_argument(
        "--latency-warmup",
        type=int,
        default=defaults.latency_warmup,
        help="jobs run before the samples are taken",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=list(defaults.modes),
        help=f"{' '.join(MODES)} (default: {' '.join(DEFAULT_MODES)})",
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        default=list(defaults.sides),
        help="ours node pgqueuer (default: ours node; pgqueuer runs in the batched modes "
        "only and needs the pgqueuer package)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        help="where to write the results (default: benchmarks/results/latest.json, "
        "or soak.json with --soak)",
    )
    parser.add_argument(
        "--pgqueuer-limit",
        type=int,
        metavar="N",
        help="pgqueuer's concurrency_limit on its entrypoint, enforced across all its "
        "processes (default: C; 0: no limit, pgqueuer's own default)",
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument(
        "--database-url",
        help="server to create scratch databases on (default: $DATABASE_URL, else "
        "postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument(
        "--node-dir",
        type=Path,
        help="where to install graphile-worker 0.17 (default: ~/.cache/sqlalchemy-graphile/"
        "bench-node)",
    )
    parser.add_argument(
        "--loop",
        default=defaults.loop,
        help="event loop of our worker: auto (uvloop if installed), asyncio or uvloop",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        help="seconds one child process may run (the soak: may go without progress)",
    )
    parser.add_argument(
        "--soak",
        type=int,
        metavar="N",
        help="instead of the comparison, run one worker of ours until N jobs are processed "
        "and compare its RSS at --soak-baseline jobs and at N",
    )
    parser.add_argument("--soak-baseline", type=int, default=defaults.soak_baseline)
    parser.add_argument("--soak-mode", default=defaults.soak_mode, help=" ".join(MODES))
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="our workers count every job in Prometheus metrics (WorkerMetrics), to measure "
        "what that costs (needs the prometheus extra)",
    )
    parser.add_argument(
        "--plugins",
        nargs="+",
        default=[],
        metavar="SET",
        help="instead of Node, run our worker again with each plugin set (hooks: every hook, "
        "doing nothing; tracing: the otel extra's TracingPlugin on the OpenTelemetry SDK) "
        "and report each against the run without plugins",
    )
    parser.add_argument(
        "--enqueue",
        default=defaults.enqueue,
        help="how our side adds the jobs of the enqueue run: jobs (add_jobs, returning Job "
        "objects), ids (add_jobs with return_jobs=False) or copy (copy_jobs)",
    )
    parser.add_argument(
        "--asynchronous-release-commit",
        action="store_true",
        help="instead of Node, run our worker again with asynchronous_release_commit=True and "
        "report it against the run without (it never enters the comparison with Node)",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None) -> BenchConfig:
    """Parse and check the command line; exits with status 2 and a message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return BenchConfig(
            jobs=args.jobs,
            processes=tuple(args.processes),
            concurrency=args.concurrency,
            latency_samples=args.latency_samples,
            latency_warmup=args.latency_warmup,
            modes=tuple(args.modes),
            sides=tuple(args.sides),
            json_path=args.json_path,
            markdown=args.markdown,
            database_url=args.database_url,
            node_dir=args.node_dir,
            loop=args.loop,
            timeout=args.timeout,
            soak=args.soak,
            soak_baseline=args.soak_baseline,
            soak_mode=args.soak_mode,
            metrics=args.metrics,
            plugins=tuple(args.plugins),
            enqueue=args.enqueue,
            asynchronous_release_commit=args.asynchronous_release_commit,
            pgqueuer_limit=args.pgqueuer_limit,
        )
    except ConfigurationError as error:
        parser.error(str(error))
