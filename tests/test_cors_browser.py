"""Cross-origin streams in a real Chromium: the page on one origin (localhost),
the stream on another (127.0.0.1), both served by one server process."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import Server, base_env, free_port, spawn_server, stop
from tests.sse_client import publish, unique
from tests.test_example_browser import CHROMIUM, CHROMIUM_ARGS

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"Chromium is not installed at {CHROMIUM}"
    ),
]

DOORS = [("uvicorn", "fast"), ("daphne", "view")]


@pytest.fixture(scope="module", params=DOORS, ids=["-".join(p) for p in DOORS])
def cors_server(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    kind, door = request.param
    port = free_port()
    env = base_env(
        SSE_TEST_DB=server_db,
        SSE_TEST_LAYER="memory",
        SSE_KEEPALIVE="0.5",
        SSE_TEST_DOOR=door,
        SSE_TEST_CORS_ORIGINS=f"http://localhost:{port}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        server = Server(kind, port, spawn_server(kind, port, env, log), env, log)
        try:
            yield server
        finally:
            stop(server.proc)


OPEN_STREAM = """async (url) => {
  const source = new EventSource(url, { withCredentials: true });
  window.received = [];
  source.addEventListener("message", (e) => window.received.push(e.data));
  return await new Promise((resolve) => {
    source.onopen = () => resolve("open");
    source.onerror = () => resolve(source.readyState === EventSource.CLOSED ? "closed" : "error");
  });
}"""

PREFLIGHTED_FETCH = """async (url) => {
  // Last-Event-ID is not a CORS-safelisted header: the browser preflights.
  const response = await fetch(url, {
    credentials: "include",
    headers: { "Last-Event-ID": "not{cors}safe" },
  });
  const reader = response.body.getReader();
  const { value } = await reader.read();
  await reader.cancel();
  return [response.status, new TextDecoder().decode(value)];
}"""


async def test_allowed_origin_streams_across_origins_and_passes_preflight(
    cors_server: Server,
) -> None:
    port = cors_server.port
    stream_url = f"http://127.0.0.1:{port}/sse/?channel=public"
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            allowed = await (await browser.new_context()).new_page()
            await allowed.goto(f"http://localhost:{port}/test/page/")
            assert await allowed.evaluate(OPEN_STREAM, stream_url) == "open"
            text = unique("cross")
            async with httpx.AsyncClient(timeout=15.0) as client:
                await publish(client, cors_server.url, "public", data=text)
            await allowed.wait_for_function(
                "(text) => window.received.includes(text)", arg=text, timeout=10_000
            )
            status, first = await allowed.evaluate(PREFLIGHTED_FETCH, stream_url)
            assert status == 200 and "retry:" in first

            # The same page served from 127.0.0.1 reading from localhost: not allowed.
            foreign = await (await browser.new_context()).new_page()
            await foreign.goto(f"http://127.0.0.1:{port}/test/page/")
            other = f"http://localhost:{port}/sse/?channel=public"
            assert await foreign.evaluate(OPEN_STREAM, other) == "closed"
        finally:
            await browser.close()
    if cors_server.kind == "daphne":  # its access log shows the preflight was answered
        assert '"OPTIONS /sse/?channel=public" 204' in cors_server.output()
