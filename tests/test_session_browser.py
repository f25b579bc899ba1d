"""A password change in a real Chromium: the tab that changed it comes back
with its new session cookie and resumes with nothing lost (its stream on the
old key is closed with "session changed"); the other session's tab is
refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import Server, running_server
from tests.sse_client import unique

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]

COUNT = 12


@pytest.fixture(scope="module")
def page_server(server_db: str) -> Iterator[Server]:
    with running_server("daphne", SSE_TEST_DB=server_db, SSE_KEEPALIVE="0.5") as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


async def publish(server: Server, channel: str, n: int) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        body = {"channel": channel, "event": "message", "data": {"n": n}}
        response = await client.post("/test/publish/", content=json.dumps(body))
        response.raise_for_status()


async def tab(browser: Any, server: Server, username: str) -> tuple[Any, Any, int]:
    context = await browser.new_context()
    page = await context.new_page()
    response = await page.goto(f"{server.url}/test/login/?username={username}")
    pk = int(json.loads(await response.text())["pk"])
    await page.goto(f"{server.url}/test/page/?channel=user:{pk}&own=0&share=0")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    return context, page, pk


async def numbers(page: Any) -> list[int]:
    texts = await page.locator("#log li").all_text_contents()
    return [json.loads(t)["n"] for t in texts]


async def wait_count(page: Any, count: int) -> None:
    await page.wait_for_function(
        "n => document.querySelectorAll('#log li').length >= n", arg=count, timeout=TIMEOUT
    )


async def session_key(context: Any) -> str:
    return next(c["value"] for c in await context.cookies() if c["name"] == "sessionid")


async def test_changer_tab_resumes_under_the_new_key_and_the_other_is_refused(
    browser: Any, page_server: Server
) -> None:
    srv = page_server
    name = unique("br")
    ctx_a, a, pk = await tab(browser, srv, name)
    ctx_b, b, pk_b = await tab(browser, srv, name)
    assert pk_b == pk
    channel = f"user:{pk}"
    for n in range(3):
        await publish(srv, channel, n)
    await wait_count(a, 3)
    await wait_count(b, 3)

    old = await session_key(ctx_a)
    status = await a.evaluate(
        "fetch('/test/session/change-password/?update=1').then(r => r.status)"
    )
    assert status == 200
    assert await session_key(ctx_a) != old
    # The other session is logged out: its stream ends for good.
    await b.wait_for_selector("html[data-sse-state='revoked']", timeout=TIMEOUT)

    # The changer's tab was closed on the old key and came back with the new one.
    await a.wait_for_function(
        "() => window.sseStates.includes('reconnecting')"
        " && window.sseStates[window.sseStates.length - 1] === 'open'",
        timeout=TIMEOUT,
    )
    for n in range(3, 6):
        await publish(srv, channel, n)
        await wait_count(a, n + 1)
    assert await a.get_attribute("html", "data-sse-state") == "open"
    before = await numbers(a)
    # It goes away and comes back (a reload): only the new key can open the
    # stream, and it resumes after the last event it saw.
    await a.evaluate("DjangoSSE.close()")
    for n in range(6, COUNT):
        await publish(srv, channel, n)
    await a.reload()
    await a.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    await wait_count(a, COUNT - 6)
    after = await numbers(a)
    assert before + after == list(range(COUNT))  # none lost, none twice
    assert await numbers(b) == [0, 1, 2]  # nothing private after the change
    await ctx_a.close()
    await ctx_b.close()
