"""The :class:`Job` row returned by the add methods and handed to tasks in their context."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored, with ``task_identifier`` and ``queue_name`` resolved.

    ``payload_json`` is the stored JSON text; :attr:`payload` parses it on access. ``flags``
    is the stored object of flags (``{"flag": True}``) or ``None``.
    """

    id: int
    task_identifier: str
    queue_name: str | None
    payload_json: str
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: dict[str, bool] | None

    @property
    def payload(self) -> Any:
        """The payload, parsed from :attr:`payload_json`."""
        return json.loads(self.payload_json)

    @property
    def is_permanently_failed(self) -> bool:
        """Whether the job has used all its attempts."""
        return self.attempts >= self.max_attempts
