"""The seam through which the worker reports how long its database round trips take.

The job source and the releaser time their statements only when an observer is given (the
``prometheus`` extra's :class:`~sqlalchemy_graphile.prometheus.WorkerMetrics` is one);
without one they do no extra work at all.
"""

from __future__ import annotations

from typing import Protocol


class LatencyObserver(Protocol):
    """Receives the duration of each fetch and each write of outcomes."""

    def fetched(self, seconds: float, jobs: int) -> None:
        """A fetch statement returned ``jobs`` jobs after ``seconds`` (retries included)."""

    def released(self, seconds: float, jobs: int) -> None:
        """The outcomes of ``jobs`` jobs (one, or a batch) were written in ``seconds``
        (retries and waits for an unreachable database included)."""
