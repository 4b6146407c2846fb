"""Wording a connection to the database server that failed, in one place: the worker's
start-up, the command line and anyone else who connects use :func:`cannot_connect`.

It imports neither SQLAlchemy nor a driver: it reads the host and port from asyncpg's
connection options (what :func:`~sqlalchemy_graphile._urls.asyncpg_options` makes of a URL).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from typing import Any

from .errors import DatabaseConnectionError

#: PostgreSQL's default port, which the drivers use when neither the URL nor ``$PGPORT``
#: names one.
DEFAULT_PORT = 5432

_UNREACHABLE = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT}
)


def cannot_connect(error: OSError, options: Mapping[str, Any]) -> DatabaseConnectionError:
    """Our error for ``error``, raised while connecting to the server that the asyncpg
    connection ``options`` name (their ``host`` and ``port``; the drivers' defaults,
    ``$PGHOST`` and ``$PGPORT``, when absent). The message names the host, and the port
    unless the host name itself could not be resolved."""
    host = _text(options.get("host") or os.environ.get("PGHOST"))
    port = _text(options.get("port") or os.environ.get("PGPORT")) or str(DEFAULT_PORT)
    where = f"{host}:{port}" if host else f"the default server (port {port})"
    if isinstance(error, socket.gaierror):
        reason = error.strerror or str(error)
        message = f"cannot connect to the database: host {host!r} was not found ({reason})"
    elif isinstance(error, ConnectionRefusedError):
        message = (
            f"cannot connect to the database at {where}: connection refused "
            "(is PostgreSQL running there, on that port?)"
        )
    elif isinstance(error, TimeoutError):
        message = f"cannot connect to the database at {where}: timed out"
    else:
        message = f"cannot connect to the database at {where}: {error.strerror or error}"
    return DatabaseConnectionError(message, host=host, port=port)


def is_connection_failure(error: BaseException) -> bool:
    """Whether ``error`` is what connecting to an unreachable server raises: a host name
    that does not resolve, a refused or timed-out connection, an unreachable network (or
    several of these, one per address tried)."""
    if isinstance(error, socket.gaierror | ConnectionRefusedError | TimeoutError):
        return True
    if type(error) is not OSError:
        return False
    return error.errno in _UNREACHABLE or str(error).startswith("Multiple exceptions:")


def _text(value: object) -> str | None:
    """A host or port option as text: several (a list) joined by commas."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or None
    return None if value is None or value == "" else str(value)
