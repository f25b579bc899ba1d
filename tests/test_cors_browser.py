"""Cross-origin streams in a real Chromium: an allowed origin reads, another cannot."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT, requires_chromium
from tests.servers import Server, running_server
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
            assert await allowed.evaluate("window.got[0]") == '"hi"'  # a str is JSON
            assert await allowed.evaluate("window.failed") is False
            assert await evil.evaluate("window.got.length") == 0
        finally:
            await browser.close()


@contextmanager
def two_origins(server_db: str, door: str) -> Iterator[tuple[str, str, Server]]:
    """A page server and a stream server on two origins of one site
    (http://localhost:A, http://localhost:B): the stream server allows the page's."""
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_KEEPALIVE": "0.5"}
    with running_server("daphne", **env) as page_server:
        page_origin = f"http://localhost:{page_server.port}"
        with running_server("uvicorn", SSE_TEST_DOOR=door, SSE_TEST_CORS=page_origin, **env) as api:
            yield page_origin, f"http://localhost:{api.port}", api


async def helper_page(browser: Any, page_origin: str) -> Any:
    """A page of ``page_origin`` with the JS helper loaded and no stream of its own."""
    page = await browser.new_page()
    await page.goto(f"{page_origin}/test/js/page/?own=0")
    await page.wait_for_function("window.DjangoSSE !== undefined", timeout=TIMEOUT)
    return page


async def publish_to(api: Server, channel: str, data: Any) -> None:
    async with httpx.AsyncClient(timeout=15.0) as client:
        await publish(client, api.url, channel, event="note", data=data)


CONNECT = """(options) => {
  window.got = [];
  window.cross = DjangoSSE.connect(Object.assign({share: false, retryBase: 100}, options));
  window.cross.on("note", (data) => window.got.push(data));
}"""


@pytest.mark.parametrize("door", ["fast", "view"])
async def test_with_credentials_streams_another_origins_private_channel(
    door: str, server_db: str
) -> None:
    with two_origins(server_db, door) as (page_origin, api_origin, api):
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, LOCAL_NETWORK_OFF]
            )
            try:
                context = await browser.new_context()
                # The session cookie of localhost reaches both ports (one site).
                login = await context.request.get(f"{api_origin}/test/login/?username=cors-cred")
                pk = (await login.json())["pk"]
                page = await helper_page(context, page_origin)
                channel = f"user:{pk}"
                await page.evaluate(
                    CONNECT,
                    {"url": f"{api_origin}/sse/", "channels": [channel], "withCredentials": True},
                )
                await page.wait_for_function("window.cross.state === 'open'", timeout=TIMEOUT)
                await publish_to(api, channel, {"n": 1})
                await page.wait_for_function("window.got.length === 1", timeout=TIMEOUT)
                assert await page.evaluate("window.got") == [{"n": 1}]

                # Without the option the same stream is anonymous, and refused.
                await page.evaluate(CONNECT, {"url": f"{api_origin}/sse/", "channels": [channel]})
                await page.wait_for_function("window.cross.state === 'denied'", timeout=TIMEOUT)
                assert await page.evaluate("window.cross.status") == 403
            finally:
                await browser.close()


async def test_the_token_flow_fetches_a_token_for_every_connection(server_db: str) -> None:
    with two_origins(server_db, "fast") as (page_origin, api_origin, api):
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, LOCAL_NETWORK_OFF]
            )
            try:
                context = await browser.new_context()
                async with httpx.AsyncClient(timeout=15.0) as client:
                    response = await client.get(
                        f"{api_origin}/test/drf-token/", params={"username": "cors-token"}
                    )
                    key, pk = response.json()["key"], response.json()["pk"]
                page = await helper_page(context, page_origin)
                streams: list[str] = []
                page.on(
                    "request",
                    lambda r: (
                        streams.append(r.url)
                        if r.url.startswith(f"{api_origin}/sse/?")
                        and "text/event-stream" in (r.headers.get("accept") or "")
                        else None
                    ),
                )
                channel = f"user:{pk}"
                await page.evaluate(
                    CONNECT,
                    {
                        "url": f"{api_origin}/sse/",
                        "channels": [channel],
                        # No cookies: the REST framework token authenticates the token request.
                        "tokenUrl": f"{api_origin}/sse/token/",
                        "tokenHeaders": {"Authorization": f"Token {key}"},
                    },
                )
                await page.wait_for_function("window.cross.state === 'open'", timeout=TIMEOUT)
                await publish_to(api, channel, {"n": 1})
                await page.wait_for_function("window.got.length === 1", timeout=TIMEOUT)

                # A restart drops the stream; the reconnection needs a new token
                # (each is single-use) and resumes with what was sent meanwhile.
                api.restart()
                await publish_to(api, channel, {"n": 2})
                await page.wait_for_function("window.got.length === 2", timeout=TIMEOUT)
                await page.wait_for_function("window.cross.state === 'open'", timeout=TIMEOUT)
                await publish_to(api, channel, {"n": 3})
                await page.wait_for_function("window.got.length === 3", timeout=TIMEOUT)
                assert await page.evaluate("window.got") == [{"n": 1}, {"n": 2}, {"n": 3}]
            finally:
                await browser.close()
        tokens = [parse_qs(urlsplit(url).query)["token"][0] for url in streams]
        assert len(tokens) >= 2 and len(set(tokens)) == len(tokens)
