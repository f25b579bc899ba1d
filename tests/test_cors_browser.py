"""Cross-origin streams in a real Chromium: an allowed origin reads, another cannot."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.servers import running_server
from tests.sse_client import publish, unique

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.server,
    requires_chromium,
]

PAGE = """<!doctype html><title>x</title><script>
window.got = []; window.failed = false;
const source = new EventSource("%s", {withCredentials: true});
source.addEventListener("note", (e) => window.got.push(e.data));
source.onerror = () => { if (source.readyState === EventSource.CLOSED) window.failed = true; };
</script>"""


async def open_page(browser: Any, origin: str, stream_url: str) -> Any:
    """A page served at ``origin`` (faked by the browser) opening ``stream_url``."""
    page = await browser.new_page()

    async def fulfil(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=PAGE % stream_url)

    await page.route(f"{origin}/", fulfil)
    await page.goto(f"{origin}/")
    return page


# Pages on localhost reading from 127.0.0.1: other origins. The pages are served
# by the browser itself, which Chromium then treats as public documents; its
# local-network-access rules (a separate permission, not CORS) are turned off.
ALLOWED = "http://localhost:1"
EVIL = "http://localhost:2"
LOCAL_NETWORK_OFF = (
    "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,"
    "PrivateNetworkAccessSendPreflights"
)


@pytest.mark.parametrize("door", ["fast", "view"])
async def test_allowed_origin_reads_and_another_origin_is_refused(
    door: str, server_db: str
) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_TEST_CORS": ALLOWED}
    with running_server("uvicorn", SSE_TEST_DOOR=door, **env) as server:
        await _allowed_and_refused(server.url)


async def _allowed_and_refused(base: str) -> None:
    channel = f"news:{unique()}"
    url = f"{base}/sse/?channel={channel}"
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, LOCAL_NETWORK_OFF]
        )
        try:
            allowed = await open_page(browser, ALLOWED, url)
            evil = await open_page(browser, EVIL, url)
            await evil.wait_for_function("window.failed === true", timeout=15000)
            async with httpx.AsyncClient(timeout=15.0) as client:
                # Publish until the allowed page's stream is open and has one.
                for _ in range(50):
                    await publish(client, base, channel, event="note", data="hi")
                    if await allowed.evaluate("window.got.length") > 0:
                        break
                    await allowed.wait_for_timeout(200)
            assert await allowed.evaluate("window.got[0]") == "hi"
            assert await allowed.evaluate("window.failed") is False
            assert await evil.evaluate("window.got.length") == 0
        finally:
            await browser.close()
