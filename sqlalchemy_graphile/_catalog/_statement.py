"""One statement of the catalog, written once and rendered for the driver that runs it.

A statement's text names its parameters (``:job_ids``) and declares each one's SQL type, so
that it can run on either driver the package uses:

* on asyncpg (the worker) as :attr:`Statement.numbered`: each name becomes ``$n`` (a name
  used twice is one parameter) and :meth:`Statement.arguments` puts the values in that
  order. asyncpg prepares the text once per connection and reuses it.
* on a SQLAlchemy connection (helpers, ``WorkerUtils``, ``run_jobs``, migrations) as
  :attr:`Statement.clause`: a ``text()`` clause whose bind parameters carry SQLAlchemy types,
  so that asyncpg, psycopg 3 and psycopg2 bind lists, times and flags alike.

Names are written ``:name`` and never directly followed by ``::`` (SQLAlchemy would not see
them); a parameter that needs a cast is written ``cast(:name as type)``. This module imports
SQLAlchemy only when a clause is first asked for, so the worker never loads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import TextClause

#: A parameter in statement text: ``:name`` not preceded by a colon or a word character.
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

#: The SQL types a parameter may be declared with.
SQL_TYPES = frozenset(
    {
        "text",
        "json",
        "integer",
        "bigint",
        "float8",
        "boolean",
        "timestamptz",
        "text[]",
        "integer[]",
        "bigint[]",
        "interval",
    }
)


@dataclass(frozen=True, eq=False)
class Statement:
    """``sql`` with named parameters, and the SQL type of each (``{"job_ids": "bigint[]"}``).

    Raises :class:`ValueError` when the text and the declared parameters disagree: a
    statement is defined at import time, so that is a programming error, never user input.
    """

    sql: str
    types: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        used = dict.fromkeys(_PARAMETER.findall(self.sql))
        undeclared = [name for name in used if name not in self.types]
        unused = [name for name in self.types if name not in used]
        unknown = [t for t in self.types.values() if t not in SQL_TYPES]
        if undeclared or unused or unknown:
            raise ValueError(
                f"statement parameters disagree: undeclared {undeclared}, unused {unused}, "
                f"unknown types {unknown}"
            )

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The parameter names in the order of their ``$n`` numbers."""
        return tuple(dict.fromkeys(_PARAMETER.findall(self.sql)))

    @cached_property
    def numbered(self) -> str:
        """The text for asyncpg: ``:name`` replaced by ``$n``."""
        numbers = {name: f"${position}" for position, name in enumerate(self.names, start=1)}
        return _PARAMETER.sub(lambda match: numbers[match.group(1)], self.sql)

    def arguments(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """``values`` in the order of :attr:`numbered`'s parameters (a missing one is an
        error: :class:`KeyError`)."""
        return tuple(values[name] for name in self.names)

    @cached_property
    def clause(self) -> TextClause:
        """The text as a SQLAlchemy clause with typed bind parameters."""
        from sqlalchemy import text

        from ._sqlalchemy_types import bind_parameters

        return text(self.sql).bindparams(*bind_parameters(self.names, self.types))


#: A statement and the values of its parameters: what a store, or a routine of several
#: statements, hands to the driver that runs it.
Call = tuple[Statement, Mapping[str, Any]]
