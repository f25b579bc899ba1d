"""HTTP/2 in front of the server: many channel sets in one browser, across a reload.

HTTP/1.1 gives a browser six connections per origin, so a seventh tab with its
own stream waits forever. Behind nginx speaking HTTP/2 (the deployment
template, ``example_project/deploy/``), every tab's stream is one stream of a
single connection. ``nginx -s reload`` then drains the old worker: after its
``worker_shutdown_timeout`` it closes the streams, and each EventSource comes
back to the new worker with its ``Last-Event-ID`` and resumes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import Nginx, Server, nginx_binary, running_nginx_process, running_server
from tests.sse_client import unique

pytestmark = [
    pytest.mark.server,
    requires_chromium,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed"),
]

TABS = 20
#: Events published per channel before the reload.
BEFORE = 3

LISTEN = """([url]) => {
  window.__got = {};
  window.__opens = 0;
  window.__resets = 0;
  const source = new EventSource(url);
  source.onopen = () => { window.__opens += 1; };
  source.addEventListener("stream-reset", () => { window.__resets += 1; });
  source.addEventListener("tick", (e) => {
    const data = JSON.parse(e.data);
    (window.__got[data.channel] = window.__got[data.channel] || []).push(data.n);
  });
}"""


@pytest.fixture
async def backend(server_db: str) -> AsyncIterator[Server]:
    with running_server(
        "uvicorn",
        SSE_TEST_DB=server_db,
        SSE_TEST_LAYER="memory",
        SSE_TEST_DOOR="fast",
        SSE_KEEPALIVE="1",
        SSE_RETRY_MS="200",
    ) as server:
        yield server


@pytest.fixture
def nginx(backend: Server) -> Any:
    # A short drain, so the test need not wait the template's 10 s.
    with running_nginx_process([backend.port], http2=True, shutdown_timeout="1s") as proc:
        yield proc


async def publish(client: httpx.AsyncClient, server: Server, channel: str, n: int) -> None:
    response = await client.post(
        f"{server.url}/test/publish/",
        json={"channel": channel, "event": "tick", "data": {"channel": channel, "n": n}},
    )
    assert response.status_code == 200, response.text


async def test_twenty_tabs_with_their_own_channels_stream_over_http2_and_resume_after_reload(
    backend: Server, nginx: Nginx
) -> None:
    run = unique("h2")
    shared = f"news:{run}-all"
    own = [f"news:{run}-{i}" for i in range(TABS)]
    sent: dict[str, int] = {name: 0 for name in [shared, *own]}
    origin = f"https://127.0.0.1:{nginx.port}"

    async with httpx.AsyncClient(timeout=30.0) as client, chromium() as browser:
        context = await browser.new_context(ignore_https_errors=True)
        pages = []
        for i in range(TABS):
            page = await context.new_page()
            await page.goto(f"{origin}/test/stats/")
            protocol = await page.evaluate(
                "performance.getEntriesByType('navigation')[0].nextHopProtocol"
            )
            assert protocol == "h2", protocol
            # A channel set of its own: its ticket, and the channel every tab shares.
            await page.evaluate(LISTEN, [f"/sse/?channel={own[i]}&channel={shared}"])
            pages.append(page)
        # More than HTTP/1.1's six connections per origin: every stream is open.
        for page in pages:
            await page.wait_for_function("window.__opens >= 1", timeout=TIMEOUT)

        async def round_of_events() -> None:
            for name in sent:
                await publish(client, backend, name, sent[name])
                sent[name] += 1

        for _ in range(BEFORE):
            await round_of_events()

        nginx.reload()
        # Publish while the old worker drains and the tabs come back, until every
        # tab has reconnected (its second open), then one round more.
        deadline = asyncio.get_running_loop().time() + TIMEOUT / 1000
        while True:
            await round_of_events()
            opens = [await page.evaluate("window.__opens") for page in pages]
            if min(opens) >= 2:
                break
            assert asyncio.get_running_loop().time() < deadline, f"not all reconnected: {opens}"
            await asyncio.sleep(0.1)  # pace the publisher, not a wait for a condition
        await round_of_events()

        for i, page in enumerate(pages):
            want = {own[i]: list(range(sent[own[i]])), shared: list(range(sent[shared]))}
            await page.wait_for_function(
                """(want) => Object.entries(want).every(
                    ([c, ns]) => (window.__got[c] || []).length >= ns.length)""",
                arg=want,
                timeout=TIMEOUT,
            )
            got = await page.evaluate("window.__got")
            # Every event once, in order, on the tab's own channels only.
            assert got == want, (i, got)
            assert await page.evaluate("window.__resets") == 0
        assert sent[shared] > BEFORE + 1  # events were published during the reload
        await context.close()
