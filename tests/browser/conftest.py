"""Browser tests: Playwright driving Debian's ``chromium`` (Playwright's own browser builds
are not used), against the dashboard served by uvicorn in a thread of the test process.

Without /usr/bin/chromium the tests are skipped, except in CI (``$CI`` set), where
``.ci/run`` installs it and a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from sqlalchemy_graphile.dashboard import DashboardApp

CHROMIUM = Path(os.environ.get("SG_CHROMIUM", "/usr/bin/chromium"))
# Headless, and nothing that reaches out to the network or needs a GPU or a sandbox.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_START_SECONDS = 30.0

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to the end on an event loop of its own, in another thread: the
    thread of a test that uses Playwright's sync API already runs Playwright's loop."""
    with ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, coroutine).result(timeout=_START_SECONDS * 2)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"the browser tests need Debian's chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 800})
    made.set_default_timeout(15_000)
    yield made
    made.close()


@contextmanager
def serving(app: DashboardApp) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    sock = config.bind_socket()
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="dashboard", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_SECONDS
    try:
        while not server.started:
            assert thread.is_alive(), "the dashboard server stopped while starting"
            assert time.monotonic() < deadline, "the dashboard server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(_START_SECONDS)
        sock.close()
