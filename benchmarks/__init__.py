"""Benchmarks: this package's worker against Node graphile-worker 0.17 on one server.

Run ``python -m benchmarks`` (or ``nox -s bench -- <flags>``); the method and the latest
figures are in ``docs/performance.md``.
"""
