"""The worker engine: :class:`Worker` fetches, runs and releases jobs with Graphile Worker's
semantics, on asyncpg.

Its parts reach the database only through a job store
(:class:`~sqlalchemy_graphile._store.JobStore`; the worker runs on
:class:`~sqlalchemy_graphile._store._asyncpg.AsyncpgJobStore`), which takes its statements
from the query catalog (:mod:`sqlalchemy_graphile._catalog`). Its parts, one private module each:

* ``_worker``: :class:`Worker`, the public face (options, run / run_once / stop);
* ``_options``: the options, declared once (checks, ``run`` flags, docs); ``_connect``:
  URL or engine to asyncpg arguments;
  ``_schema_check``: the start-up schema check (neither imports SQLAlchemy for a URL
  string: a worker given one never loads it unless a task adds jobs);
* ``_pool``: one run (slots, wake-ups, graceful and forceful shutdown);
* ``_slot``: the per-slot loop (fetch, run, release);
* ``_fetch``: job sources (the direct fetch of one job); ``_local_queue``: the source that
  fetches batches; ``_release``: releasers (one statement per outcome, or batched);
  ``_runner``: running a task or batch task;
* ``_task_ids``: task identifier registration;
* ``_listener``: LISTEN/NOTIFY; ``_reset_locked``: the stale-lock sweep;
* ``_unhandled``: the warning about ready jobs whose task no worker seems to handle;
* ``_log_output``: a stderr handler while a worker runs in a process without logging set up;
* ``_signals``: termination signals; ``_retry``: retry and backoff policies.
"""

from __future__ import annotations

from ._options import OptionFlag, RefetchDelay, WorkerOptions, option_flags
from ._worker import Worker

__all__ = ["OptionFlag", "RefetchDelay", "Worker", "WorkerOptions", "option_flags"]
