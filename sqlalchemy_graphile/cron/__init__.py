"""Cron: recurring tasks, scheduled by workers, with Graphile Worker's crontab format and
semantics.

Give a worker its crontab as text or as :class:`CronItem` objects::

    worker = Worker(url, tasks=[SendDigest], crontab="0 4 * * * send_digest ?fill=1d")
    worker = Worker(url, tasks=[SendDigest], crontab=[CronItem("send_digest", "0 4 * * *")])

A running worker (``run()``, not ``run_once()``) adds one job per item and matching minute
(UTC), even when several workers share the crontab. Its parts:

* ``_matcher``: time patterns and matching; ``_items``: :class:`CronItem`,
  :class:`CronItemOptions`; ``_parser``: crontab text;
* ``_scheduler``: :class:`CronScheduler`, the loop and backfill, which adds jobs through a
  ``CronStore``; ``_clock``: the clock it reads.

The worker uses this face of the package (:class:`CronScheduler`, :func:`crontab_items`),
never its private modules; cron in turn imports nothing of the worker.
"""

from __future__ import annotations

from ._items import CronItem, CronItemOptions, Matcher
from ._matcher import CronMatch, TimestampDigest
from ._parser import crontab_items, parse_crontab
from ._scheduler import CronScheduler

__all__ = [
    "CronItem",
    "CronItemOptions",
    "CronMatch",
    "CronScheduler",
    "Matcher",
    "TimestampDigest",
    "crontab_items",
    "parse_crontab",
]
