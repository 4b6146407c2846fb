"""The argument parser of the ``sqlalchemy-graphile`` command.

Parsing is strict: unknown flags and abbreviated flags are usage errors (exit status 2).
The global options (``-c``, ``-s``, ``--json``, ``--log-format``, ``-v``) are accepted before
or after the command name. Each command's handler is named in ``args.handler`` as
``"module.function"`` (a private module of this package), so ``--help`` and usage errors
import nothing heavy.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from ..worker import option_flags
from ._common import (
    CLEANUP_TASKS,
    DEFAULT_UNHANDLED_AFTER,
    JOB_STATES,
    KEY_MODES,
    cleanup_task_name,
    key_mode_name,
)

PROG = "sqlalchemy-graphile"
#: The ``--log-format`` values.
LOG_FORMATS = ("text", "json")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a number of seconds > 0, not 0")
    return value


def _multiplier(text: str) -> float:
    value = _non_negative_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _job_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a job id is an integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a job id is positive, not {value}")
    return value


def _global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes. On the sub-parsers their defaults are suppressed, so
    a value given before the command name is not overwritten by the sub-parser's default."""
    default = argparse.SUPPRESS if suppress else None
    parent = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    group = parent.add_argument_group("global options")
    group.add_argument(
        "-c",
        "--connection",
        metavar="URL",
        default=default,
        help="PostgreSQL connection URL (default: $DATABASE_URL)",
    )
    group.add_argument(
        "-s",
        "--schema",
        metavar="NAME",
        default=default,
        help="job queue schema (default: $GRAPHILE_WORKER_SCHEMA or graphile_worker)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print results as JSON (admin commands)",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default if suppress else "text",
        help="text (default), or json: one JSON object per line, with the job's fields",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="debug logging, and a traceback on errors",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The complete parser, with one sub-command per verb."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Run sqlalchemy-graphile workers, install the job queue schema and manage jobs. "
            "Works on any schema Graphile Worker 0.17 (Node) or its Rust port can use."
        ),
        parents=[_global_options(suppress=False)],
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_global_options(suppress=True)]

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help_text, description=help_text, parents=common, allow_abbrev=False
        )

    _add_run(command("run", "run a worker for the tasks in one or more Python modules"))

    migrate = command("migrate", "install the job queue schema, or adopt an installed one")
    migrate.set_defaults(handler="schema.migrate")
    check = command("check", "report whether the schema is installed and compatible")
    check.set_defaults(handler="schema.check")

    _add_add(command("add", "add a job by task identifier and JSON payload"))
    _add_list(command("list", "list jobs (without payloads)"))

    show = command("show", "show one job, payload included")
    show.add_argument("job_id", metavar="ID", type=_job_id)
    show.set_defaults(handler="inspect.show")

    complete = command("complete", "mark jobs as done: delete them (locked jobs are skipped)")
    complete.add_argument("job_ids", metavar="ID", type=_job_id, nargs="+")
    complete.set_defaults(handler="admin.complete")

    fail = command("fail", "fail jobs permanently (locked jobs are skipped)")
    fail.add_argument("job_ids", metavar="ID", type=_job_id, nargs="+")
    fail.add_argument(
        "--reason", help='recorded as last_error (default "Manually marked as failed")'
    )
    fail.set_defaults(handler="admin.fail")

    _add_reschedule(command("reschedule", "change when and how jobs run (locked jobs are skipped)"))

    remove = command("remove", "remove the job with a job key (a running job loses its key)")
    remove.add_argument("key", metavar="KEY")
    remove.set_defaults(handler="admin.remove")

    unlock = command("force-unlock", "release every job and queue locked by dead workers")
    unlock.add_argument("worker_ids", metavar="WORKER_ID", nargs="+")
    unlock.set_defaults(handler="admin.force_unlock")

    sweep = command(
        "sweep-stale-workers",
        "give back the jobs and queue locks of registered workers whose heartbeat is stale",
    )
    sweep.add_argument(
        "--sweep-threshold",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="a worker whose heartbeat is older than this is dead (default 300)",
    )
    sweep.add_argument(
        "--recovery-delay",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="recovered jobs run again no sooner than this (default 0)",
    )
    sweep.add_argument(
        "--resilient-flag",
        dest="resilient_flags",
        action="append",
        metavar="FLAG",
        help="a job flag whose holder gets --resilient-threshold-multiplier times the "
        "threshold (repeatable; default infrastructure_resilient)",
    )
    sweep.add_argument(
        "--resilient-threshold-multiplier",
        type=_multiplier,
        default=3.0,
        metavar="FACTOR",
        help="default 3",
    )
    sweep.add_argument(
        "--recover-unregistered-locks",
        action="store_true",
        help="also recover locks older than the threshold whose owner never registered "
        "(unsafe next to Graphile Worker 0.17 workers)",
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="list what would be recovered, change nothing"
    )
    sweep.set_defaults(handler="admin.sweep_stale_workers")

    cleanup = command("cleanup", "delete permanently failed jobs and unused tasks and queues")
    cleanup.add_argument(
        "tasks",
        metavar="TASK",
        nargs="*",
        type=cleanup_task_name,
        help=f"any of {', '.join(CLEANUP_TASKS)} (default: all three)",
    )
    cleanup.set_defaults(handler="admin.cleanup")

    stats = command("stats", "count jobs by state and by queue; name tasks no worker handles")
    _unhandled_after(stats)
    stats.set_defaults(handler="inspect.stats")
    command("queues", "list named queues and their locks").set_defaults(handler="inspect.queues")
    command("workers", "list the workers holding locks").set_defaults(handler="inspect.workers")

    _add_doctor(command("doctor", "check the setup and explain each problem with its fix"))
    _add_dashboard(command("dashboard", "serve the web dashboard (needs the dashboard extra)"))

    demo = command("demo", "run a worker on a handful of demonstration jobs")
    demo.add_argument("--forever", action="store_true", help="keep the worker running until Ctrl-C")
    demo.add_argument("-j", "--jobs", type=_positive_int, default=4, help="concurrency (default 4)")
    demo.add_argument(
        "--embedded",
        action="store_true",
        help="use the embedded PostgreSQL even if a local server answers "
        "(also: SG_DEMO_EMBEDDED=1)",
    )
    demo.set_defaults(handler="demo.demo")
    return parser


def _add_run(run: argparse.ArgumentParser) -> None:
    tasks = run.add_argument(
        "--tasks",
        metavar="MODULE[:ATTR]",
        action="extend",
        nargs="+",
        default=[],
        help=(
            "where the task classes are: MODULE collects every Task and BatchTask with an "
            "IDENTIFIER in the module; MODULE:ATTR names a list of task classes or a "
            "function returning one (repeatable; required unless --schema-only)"
        ),
    )
    run.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help=(
            "a WorkerPlugin (instance, class, or function returning plugins) whose hooks "
            "run on every job (repeatable)"
        ),
    )
    run.add_argument(
        "--once", action="store_true", help="run every job that is runnable now, then exit"
    )
    run.add_argument(
        "--crontab",
        metavar="PATH",
        help="schedule the recurring jobs of this crontab file (not with --once)",
    )
    run.add_argument(
        "--uvloop",
        action="store_true",
        help="run on uvloop (pip install 'sqlalchemy-graphile[uvloop]')",
    )
    run.add_argument(
        "--name",
        metavar="NAME",
        help="application_name of the worker's connections (default: $SG_APPLICATION_NAME)",
    )
    migrate = run.add_mutually_exclusive_group()
    migrate.add_argument(
        "--schema-only", action="store_true", help="install or adopt the schema, then exit"
    )
    migrate.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not install the schema first; only check that it is compatible",
    )
    _add_worker_options(run.add_argument_group("worker options"))
    run.set_defaults(handler="run.run")
    _show_as_required(run, tasks)


def _show_as_required(parser: argparse.ArgumentParser, action: argparse.Action) -> None:
    """Show ``action`` without brackets in the usage line. It is not ``required`` for
    argparse, because one option (``--schema-only``) makes it unnecessary; :func:`parse_args`
    enforces it otherwise."""
    action.required = True
    usage = parser.format_usage().removeprefix("usage: ").rstrip("\n")
    action.required = False
    parser.usage = usage.replace(parser.prog, "%(prog)s", 1)


def _add_doctor(doctor: argparse.ArgumentParser) -> None:
    doctor.add_argument(
        "--workers",
        type=_non_negative_int,
        default=1,
        metavar="N",
        help="worker processes that will run, for the connection check (default 1)",
    )
    doctor.add_argument(
        "--max-pool-size",
        type=_positive_int,
        default=10,
        metavar="N",
        help="connections of each worker's pool (default 10; each worker adds 1 for LISTEN)",
    )
    doctor.add_argument(
        "--app-connections",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="connections the application's own pools may open (default 0)",
    )
    doctor.set_defaults(handler="doctor.doctor")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a port is an integer, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, not {value}")
    return value


def _add_dashboard(dashboard: argparse.ArgumentParser) -> None:
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    dashboard.add_argument(
        "--port", type=_port, default=5678, help="port to listen on, 0 for any (default 5678)"
    )
    dashboard.add_argument(
        "--auth",
        choices=("none", "basic", "bearer"),
        default="none",
        help="sign-in: none (loopback addresses only), basic (password from "
        "$SG_DASHBOARD_PASSWORD, else generated and printed) or bearer (token from "
        "$SG_DASHBOARD_TOKEN, else generated and printed); default none",
    )
    dashboard.add_argument(
        "--user", default="admin", help="user name for --auth basic (default admin)"
    )
    dashboard.add_argument(
        "--read-only", action="store_true", help="show the queue, hide and refuse every action"
    )
    dashboard.add_argument(
        "--crontab", metavar="PATH", help="your workers' crontab, to show patterns and next runs"
    )
    dashboard.set_defaults(handler="dashboard.serve")


def _add_worker_options(group: argparse._ArgumentGroup) -> None:
    """A flag for each worker option that has one, as its declaration says (names, default,
    help and checks come from :class:`~sqlalchemy_graphile.worker.WorkerOptions`). A value
    the option refuses is a usage error."""
    for flag in option_flags():
        settings: dict[str, Any] = {"dest": flag.option, "action": flag.action, "help": flag.help}
        if flag.action in ("store", "append"):
            settings.update(default=flag.default, metavar=flag.metavar)
        if flag.parse is not None:
            settings["type"] = _usage_errors(flag.parse)
        group.add_argument(*flag.names, **settings)


def _usage_errors(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse``, with its ``ValueError`` turned into a usage error naming the problem."""

    def parse_argument(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse_argument


def _add_add(add: argparse.ArgumentParser) -> None:
    add.add_argument("identifier", metavar="IDENTIFIER", help="the task identifier")
    payload = add.add_mutually_exclusive_group()
    payload.add_argument("--payload", metavar="JSON", help="the payload (default {})")
    payload.add_argument("--payload-file", metavar="FILE", help="read the JSON payload from FILE")
    add.add_argument("--queue", metavar="NAME", help="named queue: its jobs run one at a time")
    add.add_argument("--run-at", metavar="ISO|now", help="earliest run time, with a time zone")
    add.add_argument("--max-attempts", type=int, metavar="N", help="default 25")
    add.add_argument("--priority", type=int, metavar="N", help="lower runs first (default 0)")
    add.add_argument(
        "--flag", dest="flags", action="append", metavar="FLAG", help="a flag (repeatable)"
    )
    add.add_argument("--key", metavar="KEY", help="job key, to replace or de-duplicate jobs")
    add.add_argument(
        "--job-key-mode",
        type=key_mode_name,
        choices=KEY_MODES,
        help="what an existing job with the same key gets (default replace)",
    )
    add.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a WorkerPlugin whose before_job_schedule hook sees the job (repeatable)",
    )
    add.set_defaults(handler="admin.add")


def _unhandled_after(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unhandled-after",
        type=_non_negative_float,
        default=DEFAULT_UNHANDLED_AFTER,
        metavar="SECONDS",
        help="show a task's ready jobs as unhandled when none of its jobs is locked and the "
        f"oldest has been ready this long (default {DEFAULT_UNHANDLED_AFTER:g})",
    )


def _add_list(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--state", choices=JOB_STATES, default="all")
    _unhandled_after(listing)
    listing.add_argument("--identifier", metavar="TASK", help="only jobs of this task")
    listing.add_argument("--queue", metavar="NAME", help="only jobs in this queue")
    listing.add_argument("--limit", type=_positive_int, default=50, help="default 50")
    listing.add_argument("--offset", type=_non_negative_int, default=0)
    listing.set_defaults(handler="inspect.list_jobs")


def _add_reschedule(reschedule: argparse.ArgumentParser) -> None:
    reschedule.add_argument("job_ids", metavar="ID", type=_job_id, nargs="+")
    when = reschedule.add_mutually_exclusive_group()
    when.add_argument("--now", action="store_true", help="make the jobs runnable now")
    when.add_argument("--run-at", metavar="ISO", help="new run time, with a time zone")
    reschedule.add_argument("--priority", type=int, metavar="N")
    reschedule.add_argument("--attempts", type=int, metavar="N")
    reschedule.add_argument("--max-attempts", type=int, metavar="N")
    reschedule.set_defaults(handler="admin.reschedule")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` (without the program name). Usage errors raise ``SystemExit(2)``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and args.once and args.schema_only:
        parser.error("--once and --schema-only cannot be used together")
    if args.command == "run" and args.once and args.crontab is not None:
        parser.error("--crontab cannot be used with --once: only a continuous worker runs cron")
    if args.command == "run" and not args.schema_only and not args.tasks:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices["run"].error("run needs --tasks MODULE[:ATTR] (or --schema-only)")
    changes = ("run_at", "priority", "attempts", "max_attempts")
    if args.command == "reschedule" and not (
        args.now or any(getattr(args, c) is not None for c in changes)
    ):
        parser.error("reschedule needs --now, --run-at, --priority, --attempts or --max-attempts")
    if args.command == "add" and args.job_key_mode is not None and args.key is None:
        parser.error("--job-key-mode needs --key")
    return args
