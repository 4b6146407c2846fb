"""Making a worker started from code visible when the application did not set up logging.

A library must not configure logging for its host: an application that configured logging
(a handler on the root logger or on ours) gets our records through its own handlers, at its
own levels, and this module does nothing. Only when no handler would print anything
(``logging.getLogger("sqlalchemy_graphile").hasHandlers()`` is false, and Python would fall
back to printing bare warnings) does a running worker attach one stream handler to the
``sqlalchemy_graphile`` logger, at INFO, so its start, job and stop lines appear on stderr
as the command line prints them. The handler is removed, and the level put back, when the
last worker run that attached it ends.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

#: The format of the lines the command line and an unconfigured worker print.
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_LOGGER_NAME = "sqlalchemy_graphile"


class _Output:
    """The one handler an unconfigured process gets, shared by concurrent runs."""

    def __init__(self) -> None:
        self._handler: logging.Handler | None = None
        self._level = logging.NOTSET
        self._users = 0

    def attach(self) -> Callable[[], None]:
        """Attach the handler if nothing would print our INFO lines; return the function
        that undoes it (a no-op when nothing was attached)."""
        logger = logging.getLogger(_LOGGER_NAME)
        if self._handler is None:
            if logger.hasHandlers():
                return _nothing
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            self._handler, self._level = handler, logger.level
            logger.addHandler(handler)
            if logger.level == logging.NOTSET or logger.level > logging.INFO:
                logger.setLevel(logging.INFO)
        self._users += 1
        return self._detach

    def _detach(self) -> None:
        self._users -= 1
        if self._users or self._handler is None:
            return
        logger = logging.getLogger(_LOGGER_NAME)
        logger.removeHandler(self._handler)
        logger.setLevel(self._level)
        self._handler.flush()
        self._handler = None


def _nothing() -> None:
    return None


#: Call ``show_logs_unless_configured()`` when a run starts and the function it returns
#: when the run has ended.
show_logs_unless_configured = _Output().attach
