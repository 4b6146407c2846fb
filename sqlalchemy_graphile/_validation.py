"""A pydantic ``ValidationError`` as one line for our own error messages."""

from __future__ import annotations

from pydantic import ValidationError


def validation_problems(error: ValidationError, *, whole: str = "value") -> str:
    """``location: message`` for each problem of ``error``, joined by ``"; "``; a problem
    with the whole value (no location) is named ``whole``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or whole}: {detail['msg']}"
        for detail in error.errors(include_url=False, include_input=False)
    )
