"""Headless Chromium for the browser tests: where it is, how to start it.

The tests drive Debian's `chromium` through Playwright's `executable_path`,
because Playwright's own browser download is not available everywhere these
tests run. Without Chromium they skip, except under CI, where they fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

T = TypeVar("T")

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 360, "height": 740}

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

# Running as root needs --no-sandbox. The background-networking flags stop
# Chromium's own connections to Google's hosts, which fail on a closed network.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Return Chromium's path; skip the test without it, or fail under CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = (
        "Chromium is not installed: the browser tests need Debian's chromium "
        "package (`make system-packages` installs it)."
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on its own event loop in another thread.

    Playwright's sync API keeps an event loop on the test's thread, where
    `asyncio.run` would fail.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_page(
    contexts: list[BrowserContext],
    browser: Browser,
    url: str,
    viewport: ViewportSize = DESKTOP,
) -> Page:
    """Open `url` in a new browser profile, which `contexts` closes later."""
    context = browser.new_context(viewport=viewport)
    contexts.append(context)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(url)
    return page
