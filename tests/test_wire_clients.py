"""Every client reads what a browser dispatches: httpx-sse, sseclient-py, Chromium.

The wire holds no block without data (a lone ``retry:``, a keepalive after an
event): browsers dispatch nothing for those, but httpx-sse yields each as an
empty ``message``. One stream per client on each server and door, with a
``stream-reset`` at the start, events, keepalives after them, and the
server's own ``stream-closed`` at the end: the three lists must be the same.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from httpx_sse import EventSource

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.conftest import SERVERS
from tests.servers import Server, running_server
from tests.sse_client import publish, unique, wait_until

pytestmark = [pytest.mark.server, requires_chromium]

Seen = list[tuple[str, str, str | None]]

#: The browser side: every event the page's EventSource dispatches, until the
#: server's ``stream-closed`` (after which EventSource would reconnect).
BROWSER = """
([url, names]) => new Promise((resolve) => {
  const seen = [];
  const source = new EventSource(url);
  window.__sseOpen = false;
  source.onopen = () => { window.__sseOpen = true; };
  const record = (e) => {
    seen.push([e.type, e.data, e.lastEventId || null]);
    if (e.type === "stream-closed") { source.close(); resolve(seen); }
  };
  source.onmessage = record;
  for (const name of names) source.addEventListener(name, record);
})
"""


@pytest.fixture(scope="module", params=SERVERS, ids=["-".join(p) for p in SERVERS])
def short_server(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    """A server whose streams end on their own after a few seconds (``max age``),
    with keepalives every 0.2 s."""
    kind, door = request.param
    with running_server(
        kind,
        SSE_TEST_DB=server_db,
        SSE_TEST_LAYER="memory",
        SSE_KEEPALIVE="0.2",
        SSE_MAX_STREAM_AGE="4",
        SSE_TEST_DOOR=door,
    ) as srv:
        yield srv


async def with_httpx_sse(client: httpx.AsyncClient, url: str) -> Seen:
    seen: Seen = []
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        async for sse in EventSource(response).aiter_sse():
            seen.append((sse.event, sse.data, sse.id or None))
    return seen


def with_sseclient(url: str) -> Seen:
    import sseclient

    seen: Seen = []
    with httpx.Client(timeout=30.0) as client, client.stream("GET", url) as response:
        assert response.status_code == 200
        for event in sseclient.SSEClient(response.iter_bytes()).events():
            seen.append((event.event, event.data, event.id))
    return seen


async def test_python_clients_and_chromium_see_the_same_events(short_server: Server) -> None:
    channel = f"news:{unique('wire')}"
    # An id the server does not know: the stream starts with a stream-reset.
    url = f"{short_server.url}/sse/?channel={channel}&lastEventId=bogus"
    names = ["e", "stream-reset", "stream-closed", "snapshot"]
    async with chromium() as browser, httpx.AsyncClient(timeout=30.0) as client:
        page = await browser.new_page()
        await page.goto(f"{short_server.url}/test/stats/")
        browser_task = asyncio.ensure_future(page.evaluate(BROWSER, [url, names]))
        httpx_task = asyncio.ensure_future(with_httpx_sse(client, url))
        sseclient_task = asyncio.ensure_future(asyncio.to_thread(with_sseclient, url))

        async def three() -> bool:
            response = await client.get(
                f"{short_server.url}/test/stats/", params={"channel": channel}
            )
            return int(response.json()["subscribers"]) == 3

        await wait_until(three, timeout=TIMEOUT / 1000)
        assert await page.evaluate("window.__sseOpen")
        started = time.monotonic()
        for n in range(3):
            await publish(client, short_server.url, channel, event="e", data={"n": n})
        # Keepalives follow the last event until the stream's maximum age.
        seen_browser: Seen = [tuple(e) for e in await asyncio.wait_for(browser_task, 20)]
        seen_httpx = await asyncio.wait_for(httpx_task, 20)
        seen_sseclient = await asyncio.wait_for(sseclient_task, 20)
        assert time.monotonic() - started > 1.0  # several keepalive intervals

    kinds = [kind for kind, _, _ in seen_browser]
    assert kinds == ["stream-reset", "e", "e", "e", "stream-closed"], seen_browser
    assert [json.loads(d) for k, d, _ in seen_browser if k == "e"] == [{"n": n} for n in range(3)]
    assert json.loads(seen_browser[-1][1]) == {"reason": "max age", "reconnect": True}
    # The same events, nothing more: no empty message for a retry or keepalive.
    assert seen_httpx == seen_browser
    # sseclient-py keeps no id between events; every one of ours carries its own.
    assert seen_sseclient == seen_browser
    log = short_server.output()
    assert "Traceback" not in log, log[-3000:]
