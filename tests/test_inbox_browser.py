"""``{% sse_inbox_badge %}``, ``{% sse_inbox_list %}`` and ``DjangoSSE.inbox`` in a
real Chromium: two tabs on two server processes over Redis converge, a tab that
was offline resumes on the right count, and hostile text stays text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import Server, running_server, stop
from tests.sse_client import unique

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, pytest.mark.redis, requires_chromium]

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


async def server_call(server: Server, path: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
        response = await client.post(path, content=json.dumps(body))
        response.raise_for_status()
        return response.json()


async def logged_in_context(browser: Any, server: Server) -> tuple[Any, str]:
    context = await browser.new_context()
    name = unique("tab")
    response = await context.request.get(f"{server.url}/test/login/?username={name}")
    assert response.ok
    return context, name


async def open_inbox(context: Any, server: Server, query: str = "") -> Any:
    page = await context.new_page()
    await page.goto(f"{server.url}/test/inbox/page/?{query}")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    # The one reconciling fetch after the stream opened.
    await page.wait_for_function("window.inboxChanges.length >= 1", timeout=TIMEOUT)
    return page


async def badge_is(page: Any, count: int) -> None:
    await page.wait_for_function(
        "n => document.querySelector('[data-sse-inbox-badge]').textContent === String(n)",
        arg=count,
        timeout=TIMEOUT,
    )


async def test_two_tabs_on_two_processes_converge_and_text_stays_text(
    browser: Any, redis_servers: tuple[Server, Server]
) -> None:
    one, two = redis_servers
    context, name = await logged_in_context(browser, one)
    first = await open_inbox(context, one)
    second = await open_inbox(context, two)  # another origin (port): its own stream
    assert await first.locator("[data-sse-inbox-badge]").text_content() == "0"
    sent = await server_call(one, "/test/inbox/notify/", {"username": name, "message": HOSTILE})
    for page in (first, second):
        await badge_is(page, 1)
        await page.wait_for_selector(f"li[data-id='{sent['ids'][0]}']", timeout=TIMEOUT)
        assert await page.locator(".sse-inbox-message").first.text_content() == HOSTILE
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("[data-sse-inbox-list] img").count() == 0
    await server_call(two, "/test/inbox/notify/", {"username": name, "count": 2})
    await badge_is(first, 3)
    await badge_is(second, 3)
    # Read in the first tab; the other process's tab follows.
    await first.locator(f"li[data-id='{sent['ids'][0]}'] [data-sse-inbox-read]").click()
    await badge_is(second, 2)
    await second.wait_for_selector(f"li[data-id='{sent['ids'][0]}'][data-read='true']")
    await second.locator("#all").click()
    await badge_is(first, 0)
    assert await first.locator("li[data-read='false']").count() == 0
    # The badge survives a reload: it is rendered from the database.
    await second.reload()
    assert await second.locator("[data-sse-inbox-badge]").text_content() == "0"
    assert await second.locator("li[data-id]").count() == 3
    await context.close()


async def test_a_tab_that_was_offline_resumes_on_the_right_count(
    browser: Any, server_db: str, redis_url: str
) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "redis", "REDIS_URL": redis_url}
    with running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as server:
        context, name = await logged_in_context(browser, server)
        page = await open_inbox(context, server, "share=0")
        await server_call(server, "/test/inbox/notify/", {"username": name})
        await badge_is(page, 1)
        # The server goes away: the tab is cut off while items arrive and are read.
        stop(server.proc)
        await page.wait_for_selector("html[data-sse-state='reconnecting']", timeout=TIMEOUT)
        with running_server("uvicorn", **env) as other:
            sent = await server_call(other, "/test/inbox/notify/", {"username": name, "count": 4})
            await server_call(other, "/test/inbox/read-all/", {"username": name})
            await server_call(other, "/test/inbox/notify/", {"username": name, "count": 2})
        server.restart()
        await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
        await badge_is(page, 2)
        assert await page.locator("li[data-read='false']").count() == 2
        assert await page.locator(f"li[data-id='{sent['ids'][-1]}'][data-read='true']").count() == 1
        await context.close()


async def test_a_forged_live_url_gets_no_link(
    browser: Any, redis_servers: tuple[Server, Server]
) -> None:
    one, _ = redis_servers
    context, name = await logged_in_context(browser, one)
    page = await open_inbox(context, one)
    pk = int(
        (await (await context.request.get(f"{one.url}/test/login/?username={name}")).json())["pk"]
    )
    # An event that did not come through notify() (which refuses such a URL).
    forged = {"id": 2**40, "message": "click me", "url": "javascript:window.pwned=3", "unread": 1}
    await server_call(
        one, "/test/publish/", {"channel": f"user:{pk}", "event": "notification", "data": forged}
    )
    await page.wait_for_selector(f"li[data-id='{2**40}']", timeout=TIMEOUT)
    assert await page.locator(f"li[data-id='{2**40}'] a").count() == 0
    await context.close()


async def test_tabs_sharing_one_connection_converge(
    browser: Any, redis_servers: tuple[Server, Server]
) -> None:
    """The default: tabs of one origin share one stream; the follower hears the
    leader's relay and reconciles its render-time count once."""
    one, _ = redis_servers
    context, name = await logged_in_context(browser, one)
    leader = await open_inbox(context, one)
    await server_call(one, "/test/inbox/notify/", {"username": name, "count": 2})
    await badge_is(leader, 2)
    follower = await open_inbox(context, one)
    assert await follower.evaluate("DjangoSSE.connection.leader") is False
    await badge_is(follower, 2)
    sent = await server_call(one, "/test/inbox/notify/", {"username": name})
    await badge_is(follower, 3)
    await follower.locator(f"li[data-id='{sent['ids'][0]}'] [data-sse-inbox-read]").click()
    await badge_is(leader, 2)
    await badge_is(follower, 2)
    await leader.locator("#all").click()
    await badge_is(follower, 0)
    await context.close()


async def test_the_csrf_token_never_goes_to_another_origin(
    browser: Any, redis_servers: tuple[Server, Server]
) -> None:
    """Markup planted in the page (a badge whose data-sse-inbox-url is another
    origin) gets the inbox's POSTs, but never the page's CSRF token."""
    one, two = redis_servers
    context, _ = await logged_in_context(browser, one)
    page = await open_inbox(context, one)
    seen: list[tuple[str, str | None]] = []

    async def capture(route: Any) -> None:
        request = route.request
        seen.append((request.url, (await request.all_headers()).get("x-csrftoken")))
        await route.fulfill(status=200, content_type="application/json", body='{"unread": 0}')

    await page.route("**/sse/inbox/read-all/", capture)
    await page.evaluate(
        """async (foreign) => {
          document.cookie = "csrftoken=tok3n-value; path=/";
          const root = document.createElement("div");
          root.innerHTML = '<span data-sse-inbox-badge data-count="0"></span>';
          const badge = root.firstChild;
          const own = new DjangoSSE.Inbox(null, root);
          own.read();
          await own.markAllRead();
          badge.setAttribute("data-sse-inbox-url", foreign);
          const planted = new DjangoSSE.Inbox(null, root);
          planted.read();
          await planted.markAllRead();
        }""",
        f"{two.url}/sse/inbox/",
    )
    assert seen == [
        (f"{one.url}/sse/inbox/read-all/", "tok3n-value"),
        (f"{two.url}/sse/inbox/read-all/", None),
    ], seen
    await context.close()
