"""``dashboard``: serve the web dashboard with uvicorn (needs the ``dashboard`` extra).

It listens on 127.0.0.1 unless told otherwise. Without sign-in (``--auth none``, the
default) it refuses to listen on anything but a loopback address. A basic-auth password or a
bearer token comes from the environment, or is generated and printed once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._urls import shown_url
from ..errors import ConfigurationError
from ._common import database_url, schema_name

if TYPE_CHECKING:
    from ..dashboard import DashboardAuth

#: Where ``--auth basic`` reads its password and ``--auth bearer`` its token.
PASSWORD_ENV_VAR = "SG_DASHBOARD_PASSWORD"
TOKEN_ENV_VAR = "SG_DASHBOARD_TOKEN"
#: Signs CSRF tokens, so several processes serving one address accept each other's forms.
SECRET_ENV_VAR = "SG_DASHBOARD_SECRET"
_EXTRA_HINT = "the dashboard needs its extra: pip install 'sqlalchemy-graphile[dashboard]'"


def _auth(args: argparse.Namespace) -> tuple[DashboardAuth, str | None]:
    """The auth mode, and a line to print when a secret was generated."""
    from ..dashboard import BasicAuth, BearerAuth, NoAuth
    from ..dashboard._auth import is_loopback_host

    if args.auth == "none":
        if not is_loopback_host(args.host):
            raise ConfigurationError(
                f"--auth none serves the dashboard without sign-in, so it only listens on a "
                f"loopback address, not {args.host!r}: use --auth basic or --auth bearer"
            )
        return NoAuth(), None
    if args.auth == "basic":
        password = os.environ.get(PASSWORD_ENV_VAR)
        if password:
            return BasicAuth(args.user, password), None
        password = secrets.token_urlsafe(18)
        note = f"Sign in as {args.user!r} with password {password} (set ${PASSWORD_ENV_VAR})"
        return BasicAuth(args.user, password), note
    token = os.environ.get(TOKEN_ENV_VAR)
    if token:
        return BearerAuth(token), None
    token = secrets.token_urlsafe(32)
    return BearerAuth(token), f"Bearer token: {token} (set ${TOKEN_ENV_VAR})"


def _crontab(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read --crontab: {error}") from None


def _secret() -> bytes | None:
    value = os.environ.get(SECRET_ENV_VAR)
    if not value:
        return None
    if len(value) < 16:
        raise ConfigurationError(f"${SECRET_ENV_VAR} must be at least 16 characters")
    return value.encode()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _server_class(uvicorn: Any) -> Any:
    """uvicorn's server, stopping gracefully on SIGINT and SIGTERM and then returning
    normally (uvicorn itself raises the signal again once stopped, so the process would
    die of it instead of exiting with status 0)."""

    class Server(uvicorn.Server):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.handle_exit, signum, None)
            try:
                yield
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)

    return Server


async def serve(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted."""
    try:
        import uvicorn

        from ..dashboard import dashboard_app
    except ImportError:
        raise ConfigurationError(_EXTRA_HINT) from None
    url = database_url(args)
    schema = schema_name(args)
    auth, note = _auth(args)
    app = dashboard_app(
        url,
        schema=schema,
        auth=auth,
        read_only=args.read_only,
        crontab=_crontab(args.crontab),
        secret=_secret(),
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        lifespan="on",
        log_config=None,
        access_log=args.verbose,
        server_header=False,
    )
    try:
        sock = config.bind_socket()
    except SystemExit:
        raise ConfigurationError(f"cannot listen on {args.host}:{args.port}") from None
    port = sock.getsockname()[1]
    mode = "read-only" if args.read_only else "read-write"
    lines = [
        f"Dashboard of schema {schema!r} in {shown_url(url)} ({mode}, auth {args.auth}):",
        f"  http://{_url_host(args.host)}:{port}/",
    ]
    if note is not None:
        lines.append(f"  {note}")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
    server = _server_class(uvicorn)(config)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
        sys.stdout.flush()
    return 0
