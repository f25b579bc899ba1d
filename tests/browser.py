"""Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright.

No browser is ever downloaded; tests skip with the reason when it is absent."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.servers import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "docs" / "_static" / "screenshots"
#: Milliseconds any browser-side condition may take.
TIMEOUT = 15_000

requires_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}"
)


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    """Take a screenshot; with ``SSE_UPDATE_SCREENSHOTS=1``, into the docs
    (docs/_static/screenshots/NAME.png), else into a temporary directory so a
    test run leaves the source tree alone."""
    if os.environ.get("SSE_UPDATE_SCREENSHOTS") == "1":
        folder = SCREENSHOTS
    else:
        folder = Path(tempfile.gettempdir()) / "django_sse-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path
