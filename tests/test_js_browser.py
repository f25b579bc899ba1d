"""The bundled JS helper (django-sse.js) and its template tags, in a real Chromium.

The pages come from tests/testapp (``/test/page/``), served by a real daphne
process on the in-memory layer, with history in a shared SQLite file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import Server, running_server
from tests.sse_client import wait_until

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]


@pytest.fixture(scope="module")
def page_server(server_db: str) -> Iterator[Server]:
    with running_server("daphne", SSE_TEST_DB=server_db, SSE_KEEPALIVE="0.5") as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


async def publish(server: Server, channel: str, data: Any, event: str = "message") -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        body = {"channel": channel, "event": event, "data": data}
        response = await client.post("/test/publish/", content=json.dumps(body))
        response.raise_for_status()


async def wait_subscribers(server: Server, channel: str, expected: int) -> None:
    """Wait until the server holds ``expected`` streams on ``channel`` (a closed tab's
    stream takes a moment to be noticed)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

        async def holds() -> bool:
            response = await client.get("/test/stats/", params={"channel": channel})
            return bool(response.json()["subscribers"] == expected)

        await wait_until(holds, timeout=TIMEOUT / 1000)


async def open_page(context: Any, server: Server, query: str) -> Any:
    page = await context.new_page()
    await page.goto(f"{server.url}/test/page/?{query}")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    return page


async def logged(page: Any) -> list[Any]:
    texts = await page.locator("#log li").all_text_contents()
    return [json.loads(t) if t[:1] in "{[" else t for t in texts]


async def wait_logged(page: Any, count: int) -> list[Any]:
    await page.wait_for_function(
        "n => document.querySelectorAll('#log li').length >= n", arg=count, timeout=TIMEOUT
    )
    return await logged(page)


async def test_events_render_json_parsed_text_as_text_and_fragments_swap(
    browser: Any, page_server: Server
) -> None:
    page = await open_page(await browser.new_context(), page_server, "channel=news:render")
    # The state is on <html> and on every element that carries the attribute.
    assert await page.get_attribute("#status", "data-sse-state") == "open"

    await publish(page_server, "news:render", {"n": 1, "text": "é <b>"})
    await publish(page_server, "news:render", "plain <i>text</i>")
    await publish(page_server, "news:render", "<b class='hot'>swapped</b>", event="fragment")
    await publish(page_server, "news:render", "<li>row 1</li>", event="row")
    await publish(page_server, "news:render", "<li>row 2</li>", event="row")

    assert await wait_logged(page, 2) == [{"n": 1, "text": "é <b>"}, "plain <i>text</i>"]
    await page.wait_for_selector("#swap b.hot", timeout=TIMEOUT)
    assert await page.text_content("#swap") == "swapped"
    await page.wait_for_function(
        "document.querySelectorAll('#appended li').length === 2", timeout=TIMEOUT
    )
    assert await page.locator("#appended li").all_text_contents() == ["row 1", "row 2"]


async def test_a_reload_resumes_from_session_storage_without_duplicates(
    browser: Any, page_server: Server
) -> None:
    channel = "news:reload"
    page = await open_page(await browser.new_context(), page_server, f"channel={channel}")
    for n in range(3):
        await publish(page_server, channel, {"n": n})
    assert await wait_logged(page, 3) == [{"n": 0}, {"n": 1}, {"n": 2}]

    # Away from the page (same tab, same origin) while two more are sent.
    await page.goto(f"{page_server.url}/test/stats/")
    for n in range(3, 5):
        await publish(page_server, channel, {"n": n})
    await page.goto(f"{page_server.url}/test/page/?channel={channel}")
    # The page was rendered after 3 and 4 were sent: only the tab's stored id brings them back.
    assert await wait_logged(page, 2) == [{"n": 3}, {"n": 4}]
    await publish(page_server, channel, {"n": 5})
    assert await wait_logged(page, 3) == [{"n": 3}, {"n": 4}, {"n": 5}]
    ids = await page.eval_on_selector_all("#log li", "els => els.map(e => e.dataset.id)")
    assert len(set(ids)) == 3

    await page.reload()
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    await publish(page_server, channel, {"n": 6})
    # Nothing already shown is replayed after a reload.
    assert await wait_logged(page, 1) == [{"n": 6}]


async def test_the_page_recovers_from_a_server_restart_without_losing_an_event(
    browser: Any, server_db: str
) -> None:
    channel = "news:restart"
    with running_server("daphne", SSE_TEST_DB=server_db, SSE_KEEPALIVE="0.5") as srv:
        page = await open_page(await browser.new_context(), srv, f"channel={channel}&retry=100")
        await publish(srv, channel, {"n": 0})
        assert await wait_logged(page, 1) == [{"n": 0}]

        srv.restart()
        # Sent before the page has reconnected: it must come from the replay.
        await publish(srv, channel, {"n": 1})
        await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
        await publish(srv, channel, {"n": 2})
        assert await wait_logged(page, 3) == [{"n": 0}, {"n": 1}, {"n": 2}]
        states = await page.evaluate("window.sseStates")
        assert "reconnecting" in states and states[-1] == "open"


async def test_a_denied_channel_shows_the_denied_state_and_stops(
    browser: Any, page_server: Server
) -> None:
    page = await (await browser.new_context()).new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/sse/" in r.url else None)
    await page.goto(f"{page_server.url}/test/page/?channel=staff&retry=50")
    await page.wait_for_selector("html[data-sse-state='denied']", timeout=TIMEOUT)
    assert await page.get_attribute("#status", "data-sse-state") == "denied"
    connection = await page.evaluate(
        "({status: DjangoSSE.connection.status, reason: DjangoSSE.connection.reason,"
        " timer: DjangoSSE.connection.timer})"
    )
    assert connection["status"] == 403
    assert "staff" in connection["reason"]
    assert connection["timer"] is None
    seen = len(requests)
    assert seen == 2  # the EventSource, then the probe that read the status
    # With a 50 ms retry base, a helper that kept retrying would have tried ~4 times by now.
    await page.wait_for_timeout(1000)
    assert len(requests) == seen


async def test_two_users_each_see_only_their_own_notifications(
    browser: Any, page_server: Server
) -> None:
    pages, pks = [], []
    for name in ("js-alice", "js-bob"):
        context = await browser.new_context()
        login = await context.request.get(f"{page_server.url}/test/login/?username={name}")
        pks.append((await login.json())["pk"])
        pages.append(await open_page(context, page_server, "channel=news:users"))

    for pk in pks:
        await publish(page_server, f"user:{pk}", {"message": f"for {pk}"}, event="notification")
    await publish(page_server, "news:users", {"message": "everyone"})
    for page, pk in zip(pages, pks, strict=True):
        # Both streams got the public event after the private ones were sent.
        assert await wait_logged(page, 2) == [{"message": f"for {pk}"}, {"message": "everyone"}]


async def test_eight_tabs_share_one_connection_and_stay_live(
    browser: Any, page_server: Server
) -> None:
    channel = "news:tabs"
    context = await browser.new_context()
    # More tabs than the six HTTP/1.1 connections a browser opens per origin.
    tabs = [await context.new_page() for _ in range(8)]
    for tab in tabs:
        await tab.goto(f"{page_server.url}/test/page/?channel={channel}")
    for tab in tabs:
        await tab.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    await wait_subscribers(page_server, channel, 1)

    await publish(page_server, channel, {"n": 1})
    for tab in tabs:
        assert await wait_logged(tab, 1) == [{"n": 1}]

    # The tab holding the connection goes: another takes over.
    leaders = [await tab.evaluate("DjangoSSE.connection.leader") for tab in tabs]
    assert leaders.count(True) == 1
    await tabs.pop(leaders.index(True)).close()
    await publish(page_server, channel, {"n": 2})
    for tab in tabs:
        assert await wait_logged(tab, 2) == [{"n": 1}, {"n": 2}]
    await wait_subscribers(page_server, channel, 1)


async def test_stream_reset_fires_an_event_the_page_can_reload_from(
    browser: Any, page_server: Server
) -> None:
    channel = "news:reset"
    context = await browser.new_context()
    # The tab "remembers" an id the server does not know: it must start afresh.
    await context.add_init_script(
        f"sessionStorage.setItem('django-sse:last-event-id:/sse/?{channel}', 'zzzzzzzz-9')"
    )
    page = await open_page(context, page_server, f"channel={channel}")
    await page.wait_for_function("window.sseResets.length === 1", timeout=TIMEOUT)
    assert await page.evaluate("window.sseResets") == ["unknown last event id"]
    assert (
        await page.evaluate(f"sessionStorage.getItem('django-sse:last-event-id:/sse/?{channel}')")
        is None
    )
    await publish(page_server, channel, {"n": 1})
    assert await wait_logged(page, 1) == [{"n": 1}]


async def test_close_ends_the_stream(browser: Any, page_server: Server) -> None:
    channel = "news:close"
    page = await open_page(await browser.new_context(), page_server, f"channel={channel}")
    await wait_subscribers(page_server, channel, 1)
    await page.evaluate("DjangoSSE.close()")
    assert await page.get_attribute("html", "data-sse-state") == "closed"
    await wait_subscribers(page_server, channel, 0)


async def test_5xx_answers_are_retried_with_back_off_until_the_stream_opens(
    browser: Any, page_server: Server
) -> None:
    channel = "news:flaky"
    page = await open_page(await browser.new_context(), page_server, "channel=news:other&own=0")
    # A connection of its own, through an endpoint that fails three times with 503.
    await page.evaluate(
        """() => {
          window.flakyStates = [];
          window.flaky = DjangoSSE.connect({
            url: "/test/flaky-stream/?fail=3&key=b1", channels: [arguments[0]],
            retryBase: 100, share: false,
          });
          window.flaky.on("message", (data) => { window.flakyData = data; });
          document.addEventListener("sse:state", (e) => window.flakyStates.push(e.detail));
        }""".replace("arguments[0]", json.dumps(channel))
    )
    await page.wait_for_function("window.flaky.state === 'open'", timeout=TIMEOUT)
    delays = await page.evaluate(
        "window.flakyStates.filter(s => s.state === 'reconnecting' && s.delay).map(s => s.delay)"
    )
    # Every failure is followed by one delay; the ceiling doubles each time (100, 200, 400 ms),
    # and each delay lies in its upper half.
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        ceiling = 100 * 2**attempt
        assert ceiling / 2 <= delay <= ceiling
    await publish(page_server, channel, {"n": 1})
    await page.wait_for_function("window.flakyData && window.flakyData.n === 1", timeout=TIMEOUT)
