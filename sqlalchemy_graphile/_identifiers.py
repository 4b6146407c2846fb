"""Validation and quoting of the schema name: the only identifier we ever put into SQL text.

Everything else (task identifiers, queue names, keys, flags, payloads) travels as a bound
parameter. A schema name is checked once, when a :class:`SchemaName` is made, and then
carries its quoted form; a name that is not a safe identifier is rejected, never truncated or
silently rewritten.
"""

from __future__ import annotations

import os
import re

from .errors import InvalidIdentifierError

DEFAULT_SCHEMA = "graphile_worker"
SCHEMA_ENV_VAR = "GRAPHILE_WORKER_SCHEMA"

# PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 (63) bytes; we refuse instead.
_MAX_IDENTIFIER_LENGTH = 63
# ASCII letters, digits, underscore and dollar; not starting with a digit or dollar.
_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def validate_schema_name(name: object) -> str:
    """Return ``name`` if it is a safe schema name, else raise :class:`InvalidIdentifierError`.

    A safe name is a non-empty ``str`` of at most 63 characters made of ASCII letters, digits,
    ``_`` and ``$``, not starting with a digit or ``$``, with at most one ``$`` (two could
    spell a dollar-quote tag that ends a function body early), and not starting with ``pg_``
    (reserved by PostgreSQL). Upper-case letters are allowed; the name is always quoted, so it
    is used exactly as given.
    """
    if not isinstance(name, str):
        raise InvalidIdentifierError(f"schema name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidIdentifierError("schema name must not be empty")
    if len(name) > _MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(
            f"schema name {name!r} is longer than {_MAX_IDENTIFIER_LENGTH} characters; "
            "PostgreSQL would truncate it"
        )
    if not _SAFE.fullmatch(name):
        raise InvalidIdentifierError(
            f"schema name {name!r} is not a safe identifier: use letters, digits, '_' "
            "and '$', not starting with a digit"
        )
    if name.count("$") > 1:
        raise InvalidIdentifierError(
            f"schema name {name!r} contains more than one '$': it could end a dollar-quoted "
            "function body early"
        )
    if name.lower().startswith("pg_"):
        raise InvalidIdentifierError(f"schema name {name!r} is reserved: it starts with 'pg_'")
    return name


class SchemaName(str):
    """A schema name that has passed :func:`validate_schema_name`: made once where a name
    enters the package (options, helpers, CLI), then passed around as the ``str`` it is.

    Raises :class:`InvalidIdentifierError` when the name is not safe.
    """

    __slots__ = ()

    def __new__(cls, name: object) -> SchemaName:
        if isinstance(name, SchemaName):
            return name
        return super().__new__(cls, validate_schema_name(name))

    @property
    def quoted(self) -> str:
        """The name double-quoted for SQL text (a safe name holds no quote to escape)."""
        return f'"{self}"'


def schema_name(name: object) -> SchemaName:
    """``name`` as a :class:`SchemaName` (validated unless it already is one)."""
    return name if isinstance(name, SchemaName) else SchemaName(name)


def quote_identifier(name: str) -> str:
    """Validate ``name`` as a schema name (unless it is a :class:`SchemaName`) and return it
    double-quoted for SQL text; raises :class:`InvalidIdentifierError` as
    :func:`validate_schema_name` does."""
    return schema_name(name).quoted


def resolve_schema(schema: str | None = None) -> str:
    """The schema to use: ``schema`` if given, else ``$GRAPHILE_WORKER_SCHEMA``, else the
    default ``graphile_worker``; validated either way."""
    if schema is None:
        schema = os.environ.get(SCHEMA_ENV_VAR) or DEFAULT_SCHEMA
    return validate_schema_name(schema)
