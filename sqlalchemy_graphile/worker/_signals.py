"""Termination signals, shared by every worker running in the process.

While at least one worker with ``handle_signals=True`` runs on the main thread, SIGINT,
SIGTERM, SIGHUP and SIGUSR2 are handled by the event loop: the first signal asks every
registered worker for a graceful shutdown, any later one for a forceful shutdown. When the
last worker unregisters, the handlers that were installed before are put back.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("sqlalchemy_graphile.worker")

SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR2")
    if hasattr(signal, name)
)

#: Called with the signal's name and whether the shutdown should be forceful.
SignalCallback = Callable[[str, bool], None]


class _SignalHub:
    def __init__(self) -> None:
        self._callbacks: list[SignalCallback] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._received = 0

    def register(self, callback: SignalCallback) -> Callable[[], None]:
        """Route termination signals to ``callback`` until the returned function is called.
        Without a running loop on the main thread nothing is installed (a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not on the main thread: termination signals are left alone")
            return lambda: None
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            logger.debug("signal handlers belong to another event loop; left alone")
            return lambda: None
        if self._loop is None and not self._install(loop):
            return lambda: None
        self._callbacks.append(callback)

        def unregister() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
                if not self._callbacks:
                    self._uninstall()

        return unregister

    def _install(self, loop: asyncio.AbstractEventLoop) -> bool:
        try:
            for sig in SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                loop.add_signal_handler(sig, self._received_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError) as error:
            logger.debug("cannot install signal handlers: %s", error)
            self._loop = loop
            self._uninstall()
            return False
        self._loop = loop
        self._received = 0
        return True

    def _uninstall(self) -> None:
        loop, self._loop = self._loop, None
        for sig, previous in self._previous.items():
            if loop is not None and not loop.is_closed():
                loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
        self._previous.clear()

    def _received_signal(self, sig: signal.Signals) -> None:
        self._received += 1
        forceful = self._received > 1
        logger.warning(
            "received %s: %s shutdown of %d worker(s)%s",
            sig.name,
            "forceful" if forceful else "graceful",
            len(self._callbacks),
            "" if forceful else "; send it again to fail running jobs and stop at once",
        )
        for callback in list(self._callbacks):
            try:
                callback(sig.name, forceful)
            except Exception:
                logger.exception("a worker's signal handler raised")


_hub = _SignalHub()


def register(callback: SignalCallback) -> Callable[[], None]:
    """Route termination signals to ``callback`` (see the module docs); returns the
    function that unregisters it."""
    return _hub.register(callback)
