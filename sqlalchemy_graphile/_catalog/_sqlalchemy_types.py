"""The SQLAlchemy types of the catalog's SQL types, for statements run on a SQLAlchemy
connection (imported only then: the worker never loads SQLAlchemy)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Double, Integer, Interval, Text, bindparam
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import ARRAY

_TYPES: Mapping[str, Any] = {
    "text": Text(),
    "json": Text(),
    "integer": Integer(),
    "bigint": BigInteger(),
    "float8": Double(),
    "boolean": Boolean(),
    "timestamptz": DateTime(timezone=True),
    "interval": Interval(),
    "text[]": ARRAY(Text()),
    "integer[]": ARRAY(Integer()),
    "bigint[]": ARRAY(BigInteger()),
}


def bind_parameters(names: Iterable[str], types: Mapping[str, str]) -> list[BindParameter[Any]]:
    """A typed bind parameter for each of ``names``."""
    return [bindparam(name, type_=_TYPES[types[name]]) for name in names]
