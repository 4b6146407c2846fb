"""The workers page's rows: the crash-recovery heartbeats (where installed) joined with the
worker ids that hold locks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._queries import Heartbeat, LockHolder


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker known by its heartbeat, by the locks it holds, or both."""

    worker_id: str
    host: str | None
    pid: str | None
    started_at: datetime | None
    last_heartbeat_at: datetime | None
    metadata: Any
    jobs: int
    queues: int
    oldest_lock: datetime | None
    registered: bool


def _field(metadata: Any, *names: str) -> str | None:
    if not isinstance(metadata, dict):
        return None
    for name in names:
        value = metadata.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def worker_rows(holders: list[LockHolder], heartbeats: list[Heartbeat] | None) -> list[WorkerRow]:
    """One row per worker id, registered workers first, each group sorted by id."""
    beats = {h.worker_id: h for h in heartbeats or []}
    locks = {h.worker_id: h for h in holders}
    rows = []
    for worker_id in beats.keys() | locks.keys():
        beat, lock = beats.get(worker_id), locks.get(worker_id)
        metadata = None if beat is None else beat.metadata
        rows.append(
            WorkerRow(
                worker_id=worker_id,
                host=_field(metadata, "hostname", "host"),
                pid=_field(metadata, "pid", "process_id"),
                started_at=None if beat is None else beat.started_at,
                last_heartbeat_at=None if beat is None else beat.last_heartbeat_at,
                metadata=metadata,
                jobs=0 if lock is None else lock.jobs,
                queues=0 if lock is None else lock.queues,
                oldest_lock=None if lock is None else lock.oldest_lock,
                registered=beat is not None,
            )
        )
    rows.sort(key=lambda r: (not r.registered, r.worker_id))
    return rows
