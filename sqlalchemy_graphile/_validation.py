"""Pydantic's ``ValidationError`` in our words: as one line for our own error messages, or
as one of our error classes that is a ``ValidationError`` too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

E = TypeVar("E", bound=ValidationError)


def validation_problems(error: ValidationError, *, whole: str | None = "value") -> str:
    """``location: message`` for each problem of ``error``, joined by ``"; "``; a problem
    with the whole value (no location) is named ``whole``, or not named if it is ``None``.
    A problem a validator raised as a ``ValueError`` reads as that error's text."""
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        cause = detail.get("ctx", {}).get("error")
        message = str(cause) if detail["type"] == "value_error" and cause else detail["msg"]
        location = ".".join(str(part) for part in detail["loc"]) or whole
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def as_error_class(error: ValidationError, cls: type[E]) -> E:
    """``error`` as an instance of ``cls``, a subclass of ``ValidationError``: the same
    title, problems (:meth:`~pydantic.ValidationError.errors`) and text."""
    details: list[InitErrorDetails] = []
    for detail in error.errors(include_url=False):
        init = InitErrorDetails(type=detail["type"], loc=detail["loc"], input=detail["input"])
        if "ctx" in detail:
            init["ctx"] = detail["ctx"]
        details.append(init)
    return cls.from_exception_data(error.title, details)


@contextmanager
def raising_as(cls: type[ValidationError]) -> Iterator[None]:
    """Turn a ``ValidationError`` raised in the block into ``cls`` (see
    :func:`as_error_class`)."""
    try:
        yield
    except ValidationError as error:
        if isinstance(error, cls):
            raise
        raise as_error_class(error, cls) from None
