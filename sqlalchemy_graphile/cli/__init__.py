"""The ``sqlalchemy-graphile`` command (also ``python -m sqlalchemy_graphile``).

``run`` starts a worker for task classes found in Python modules; ``migrate`` and ``check``
manage the schema; ``add``, ``list``, ``show``, ``complete``, ``fail``, ``reschedule``,
``remove``, ``force-unlock``, ``cleanup``, ``stats``, ``queues`` and ``workers`` administer
jobs like the Rust port's CLI; ``dashboard`` serves the web dashboard; ``demo`` shows a
worker at work. See ``docs/cli.md``.
"""

from __future__ import annotations

from ._main import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SCHEMA_TOO_NEW,
    EXIT_USAGE,
    main,
)

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SCHEMA_TOO_NEW",
    "EXIT_USAGE",
    "main",
]
