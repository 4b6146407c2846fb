"""What a request asks the jobs list for: the filter, the page size and the keyset cursor.

Everything here is read from URL parameters or JSON, so every value is checked and a bad one
raises :class:`BadRequest` (an HTTP 400) before any SQL runs. The values then travel to
PostgreSQL as bound parameters; none of them is ever put into SQL text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import GraphileWorkerError
from ..job_spec import check_text

#: The job states (the Rust port's definitions): *ready* is unlocked, has attempts left and
#: is due; *scheduled* is unlocked, has attempts left and is due later; *locked* is held by a
#: worker; *failed* is unlocked with no attempts left. ``all`` is no filter.
STATES = ("all", "ready", "scheduled", "locked", "failed")
#: The states the overview counts.
COUNTED_STATES = ("ready", "scheduled", "locked", "failed")
#: The longest filter text accepted (job keys, the longest names stored, are 512).
MAX_TEXT_LENGTH = 512
#: Jobs per page, by default and at most.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_BIGINT_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEWEST_CURSOR = re.compile(r"i([0-9]{1,19})")
_RUN_ORDER_CURSOR = re.compile(r"r(-?[0-9]{1,5})\.(-?[0-9]{1,19})\.([0-9]{1,19})")


class BadRequest(GraphileWorkerError, ValueError):
    """A request parameter the dashboard cannot use; answered with HTTP 400 and this text."""


def text_param(value: object, name: str) -> str | None:
    """An optional filter text: ``None`` or empty means no filter. Refuses non-strings,
    text over :data:`MAX_TEXT_LENGTH` characters and text PostgreSQL cannot store."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be text, not {type(value).__name__}")
    if len(value) > MAX_TEXT_LENGTH:
        raise BadRequest(f"{name} is longer than {MAX_TEXT_LENGTH} characters")
    return check_text(value, name, BadRequest)


def int_param(value: object, name: str, *, minimum: int, maximum: int) -> int:
    """An integer given as text (a URL parameter) or as a JSON number."""
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer, not a boolean")
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer, not {value!r}")
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}, not {value}")
    return value


def job_id_param(value: object, name: str = "job id") -> int:
    """A job id: a positive ``bigint``."""
    return int_param(value, name, minimum=1, maximum=_BIGINT_MAX)


def limit_param(value: object) -> int:
    """The page size: :data:`DEFAULT_LIMIT` when absent, at most :data:`MAX_LIMIT`."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    return int_param(value, "limit", minimum=1, maximum=MAX_LIMIT)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a list or a bulk action covers: a state, an exact task identifier, an
    exact queue name and a search text (a case-insensitive substring of the id, task,
    queue, key, lock owner, last error or payload)."""

    state: str = "all"
    task: str | None = None
    queue: str | None = None
    search: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, object]) -> JobFilter:
        """Read ``state``, ``task``, ``queue`` and ``q`` (or ``search``) from URL parameters
        or a JSON object; raises :class:`BadRequest`."""
        state = params.get("state") or "all"
        if state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}, not {state!r}")
        search = params.get("q", params.get("search"))
        return cls(
            state=str(state),
            task=text_param(params.get("task"), "task"),
            queue=text_param(params.get("queue"), "queue"),
            search=text_param(search.strip() if isinstance(search, str) else search, "search"),
        )

    @property
    def run_order(self) -> bool:
        """Whether the list is in run order (priority, run_at, id): for ready and scheduled
        jobs, which are sorted that way by the schema's index. Other lists show the newest
        job first."""
        return self.state in ("ready", "scheduled")

    def params(self) -> dict[str, str]:
        """The URL parameters that give this filter back (empty ones left out)."""
        given = {"state": self.state, "task": self.task, "queue": self.queue, "q": self.search}
        return {k: v for k, v in given.items() if v is not None and (k != "state" or v != "all")}

    def describe(self) -> str:
        """The filter in words, for confirmations: ``state failed, task "send_email"``."""
        parts = [] if self.state == "all" else [f"state {self.state}"]
        parts += [f"{name} {value!r}" for name, value in self._texts() if value is not None]
        return ", ".join(parts) if parts else "all jobs"

    def _texts(self) -> tuple[tuple[str, str | None], ...]:
        return (("task", self.task), ("queue", self.queue), ("search", self.search))


def like_pattern(term: str) -> str:
    """``term`` as a LIKE pattern matching it anywhere, its wildcards escaped with ``\\``."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def case_matters(term: str) -> bool:
    """Whether ``term`` has letters with an upper and a lower case. Without them a
    case-sensitive LIKE finds the same rows as ILIKE, several times faster."""
    return any(c.lower() != c.upper() for c in term)


def search_id(term: str) -> int | None:
    """The job id a search term spells, if it is a number in the ``bigint`` range."""
    if re.fullmatch(r"[0-9]{1,19}", term) and 0 < int(term) <= _BIGINT_MAX:
        return int(term)
    return None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the job with this id (newest-first lists), or
    after this (priority, run_at, id) in run order."""

    id: int
    priority: int | None = None
    run_at: datetime | None = None

    def encode(self) -> str:
        """The cursor as URL-safe text: ``i<id>`` or ``r<priority>.<run_at µs>.<id>``."""
        if self.run_at is None or self.priority is None:
            return f"i{self.id}"
        micros = (self.run_at - _EPOCH) // timedelta(microseconds=1)
        return f"r{self.priority}.{micros}.{self.id}"

    @classmethod
    def decode(cls, text: object, *, run_order: bool) -> Cursor | None:
        """Read a cursor made by :meth:`encode` for a list in the same order; ``None`` or
        empty text is the first page. Raises :class:`BadRequest`."""
        if text is None or text == "":
            return None
        if not isinstance(text, str):
            raise BadRequest("cursor must be text")
        if run_order:
            matched = _RUN_ORDER_CURSOR.fullmatch(text)
            if matched is None:
                raise BadRequest("cursor is not a cursor of a list in run order")
            priority, micros, job_id = (int(part) for part in matched.groups())
            try:
                run_at = _EPOCH + timedelta(microseconds=micros)
            except OverflowError:
                raise BadRequest("cursor holds a time out of range") from None
            priority = int_param(priority, "cursor priority", minimum=-32768, maximum=32767)
            return cls(job_id_param(job_id, "cursor id"), priority, run_at)
        matched = _NEWEST_CURSOR.fullmatch(text)
        if matched is None:
            raise BadRequest("cursor is not a cursor of a newest-first list")
        return cls(job_id_param(int(matched.group(1)), "cursor id"))
