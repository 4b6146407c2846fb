"""What every benchmark child process does with its work: run it on the chosen event loop
and print its result as one JSON line for the parent. Imports nothing of the sides measured."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run_child(loop: str, work: Coroutine[Any, Any, Any]) -> None:
    """Run ``work`` on ``loop`` (``uvloop`` or ``asyncio``) with warnings logged, and print
    its result, if any, as JSON on stdout."""
    logging.basicConfig(level=logging.WARNING)
    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        result = runner.run(work)
    if result:
        print(json.dumps(result), flush=True)
