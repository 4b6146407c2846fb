"""Crontab text to :class:`CronItem` objects, with Graphile Worker's line format.

One item per line::

    # minute hour day-of-month month day-of-week task [?options] [{payload}]
    0 4 * * 1-5 send_digest ?fill=2h&max=3 {kind: "daily"}

Blank lines and lines starting with ``#`` are skipped; ``#`` elsewhere is kept. Options are
URL query syntax: ``id``, ``fill`` (a period such as ``4w3d2h1m``), ``max``, ``queue``,
``jobKey``, ``jobKeyMode`` (``replace`` or ``preserve_run_at``) and ``priority``. The
payload is a JSON5 object on the rest of the line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import json5

from ..errors import CrontabError
from ..job_spec import JobKeyMode
from ._items import CronItem, CronItemOptions, check_unique
from ._matcher import TIME_FIELDS, match_from_fields

_LINE = re.compile(TIME_FIELDS + r"\s+(.*)")
_COMMAND = re.compile(r"([_a-zA-Z][_a-zA-Z0-9:/_-]*)(?:\s+\?(\S+))?(?:\s+(\{.*\}))?")
_TIME_PHRASE_PART = re.compile(r"([0-9]+)([smhdw])")
_PERIODS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DUPLICATE_HINT = "use '?id=...' to give each line its own identifier"


def parse_crontab(text: str) -> list[CronItem]:
    """Parse crontab text into cron items, in line order.

    Raises :class:`CrontabError` naming the line for: a line that does not have five time
    fields and a command, a command that is not ``task [?options] [{payload}]``, a time
    field value out of range or not supported, a range whose end is not above its start,
    a ``*/0`` step, an unknown, repeated or malformed option, a payload that is not a
    valid JSON5 object or cannot be stored, and two lines with one identifier.
    """
    if not isinstance(text, str):
        raise CrontabError(f"a crontab must be a str, not {type(text).__name__}")
    items: list[CronItem] = []
    for number, raw in enumerate(re.split(r"\r?\n", text), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            items.append(_parse_line(line, number))
    check_unique(items, _DUPLICATE_HINT)
    return items


def crontab_items(crontab: object) -> tuple[CronItem, ...]:
    """The ``crontab`` option of a worker as items: ``None`` (no cron), crontab text, or an
    iterable of :class:`CronItem` with unique identifiers. Raises :class:`CrontabError`."""
    if crontab is None:
        return ()
    if isinstance(crontab, str):
        return tuple(parse_crontab(crontab))
    if isinstance(crontab, bytes) or not isinstance(crontab, Iterable):
        raise CrontabError(
            f"crontab must be crontab text or a list of CronItem, not {type(crontab).__name__}"
        )
    items = tuple(crontab)
    for item in items:
        if not isinstance(item, CronItem):
            raise CrontabError(f"crontab items must be CronItem objects, not {item!r}")
    check_unique(items, "give each CronItem its own identifier")
    return items


def _parse_line(line: str, number: int) -> CronItem:
    where = f"line {number} of crontab"
    parts = _LINE.fullmatch(line)
    if parts is None:
        raise CrontabError(f"Could not process {where}: {line!r}", line=number)
    try:
        match = match_from_fields(parts.groups()[:5], where)
    except CrontabError as error:
        raise CrontabError(str(error), line=number) from None
    command = _COMMAND.fullmatch(parts.group(6))
    if command is None:
        raise CrontabError(
            f"Invalid command specification in {where}: expected 'task [?options] "
            f"[{{payload}}]', got {parts.group(6)!r}",
            line=number,
        )
    task, query, payload_text = command.groups()
    identifier, options = _parse_options(query, number)
    try:
        return CronItem(
            task=task,
            match=match,
            options=options,
            payload=_parse_payload(payload_text, number),
            identifier=identifier or task,
        )
    except CrontabError as error:
        if error.line is not None:
            raise
        raise CrontabError(f"Line {number} of crontab: {error}", line=number) from None


def _parse_options(query: str | None, number: int) -> tuple[str | None, CronItemOptions]:
    """``?id=...&fill=...`` to the identifier and options."""
    values: dict[str, Any] = {}
    for key, text in parse_qsl(query or "", keep_blank_values=True):
        option = _OPTIONS.get(key)
        if option is None:
            supported = "', '".join(_OPTIONS)
            raise CrontabError(
                f"Options on line {number} of crontab contain the unsupported key {key!r}; "
                f"supported keys are: '{supported}'",
                line=number,
            )
        pattern, name, convert = option
        if name in values:
            raise CrontabError(
                f"Options on line {number} of crontab give {key!r} more than once", line=number
            )
        if pattern.fullmatch(text) is None:
            raise CrontabError(
                f"Options on line {number} of crontab contain an invalid value for {key!r}: "
                f"{text!r} is not compatible with this option",
                line=number,
            )
        try:
            values[name] = convert(text)
        except CrontabError as error:
            raise CrontabError(
                f"Options on line {number} of crontab: {error}", line=number
            ) from None
    identifier = values.pop("identifier", None)
    try:
        options = CronItemOptions(**values)
    except CrontabError as error:
        raise CrontabError(f"Options on line {number} of crontab: {error}", line=number) from None
    return identifier, options


def _parse_payload(text: str | None, number: int) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        payload = json5.loads(text)
    except (ValueError, RecursionError) as error:
        reason = str(error).removeprefix("<string>:1 ")
        raise CrontabError(
            f"Failed to parse JSON5 payload on line {number} of crontab: {reason}", line=number
        ) from None
    if not isinstance(payload, dict):
        raise CrontabError(
            f"The payload on line {number} of crontab must be a JSON5 object", line=number
        )
    return payload


def parse_time_phrase(phrase: str) -> timedelta:
    """A period such as ``4w3d2h1m``: the sum of its ``<digits><unit>`` parts, with units
    ``s``, ``m``, ``h``, ``d`` and ``w``. Raises :class:`CrontabError`."""
    total = timedelta(0)
    position = 0
    while position < len(phrase):
        part = _TIME_PHRASE_PART.match(phrase, position)
        if part is None:
            raise CrontabError(
                f"Invalid time phrase {phrase!r}: did not understand {phrase[position:]!r}"
            )
        try:
            total += int(part.group(1)) * _PERIODS[part.group(2)]
        except (OverflowError, ValueError):
            raise CrontabError(f"Invalid time phrase {phrase!r}: the period is too long") from None
        position = part.end()
    return total


def _option_int(text: str) -> int:
    if len(text.lstrip("-")) > 9:
        raise CrontabError(f"{text!r} is out of range")
    return int(text)


# Each option key: the pattern its value must match, the CronItemOptions field it sets (or
# the item's identifier) and how its text converts.
_OPTIONS: dict[str, tuple[re.Pattern[str], str, Callable[[str], Any]]] = {
    "id": (re.compile(r"[_a-zA-Z][-_a-zA-Z0-9]*"), "identifier", str),
    "fill": (re.compile(r"(?:[0-9]+[smhdw])+"), "backfill_period", parse_time_phrase),
    "max": (re.compile(r"[0-9]+"), "max_attempts", _option_int),
    "queue": (re.compile(r"[-a-zA-Z0-9_:]+"), "queue_name", str),
    "jobKey": (re.compile(r".*", re.DOTALL), "job_key", str),
    "jobKeyMode": (re.compile(r"replace|preserve_run_at"), "job_key_mode", JobKeyMode),
    "priority": (re.compile(r"-?[0-9]+"), "priority", _option_int),
}
