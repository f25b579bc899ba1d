"""Presence lists, ``DjangoSSE.presence()`` and "to others" in a real Chromium,
served by a real daphne process (tests/testapp's ``/test/presence/`` page)."""

from __future__ import annotations

import json
from typing import Any

import pytest

# The same fixtures as the helper's own browser tests: a daphne on the in-memory layer.
from tests import test_js_browser
from tests.browser import TIMEOUT, requires_chromium
from tests.servers import Server
from tests.sse_client import unique

browser = test_js_browser.browser
page_server = test_js_browser.page_server

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]


async def user_context(browser: Any, server: Server, username: str) -> Any:
    context = await browser.new_context()
    response = await context.request.get(f"{server.url}/test/login/?username={username}")
    assert response.ok
    return context


async def open_presence(context: Any, server: Server, query: str) -> Any:
    page = await context.new_page()
    await page.goto(f"{server.url}/test/presence/?{query}")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    return page


async def shown(page: Any, texts: list[str]) -> None:
    """Wait until the page's presence list shows exactly ``texts``, in any order."""
    await page.wait_for_function(
        """want => {
          const items = document.querySelectorAll("[data-sse-presence] li");
          const got = [...items].map(li => li.textContent);
          return JSON.stringify(got.sort()) === JSON.stringify([...want].sort());
        }""",
        arg=texts,
        timeout=TIMEOUT,
    )


async def test_each_user_sees_the_other_live_as_text(browser: Any, page_server: Server) -> None:
    channel = f"lobby:{unique()}"
    ann = await open_presence(
        await user_context(browser, page_server, "pb-ann"),
        page_server,
        f"channel={channel}&others=1",
    )
    await shown(ann, ["Nobody"])
    bob_context = await user_context(browser, page_server, "pb-bob")
    bob = await open_presence(bob_context, page_server, f"channel={channel}&others=1")
    # The member name is markup; it shows as text, and no element is made of it.
    await shown(ann, ["<b>pb-bob</b>"])
    await shown(bob, ["<b>pb-ann</b>"])
    assert await ann.locator("[data-sse-presence] b").count() == 0
    assert "<b>pb-bob</b>" in await ann.evaluate("window.joins")
    members = await ann.evaluate("window.tracker.members().map(m => m.member.name)")
    assert sorted(members) == ["<b>pb-ann</b>", "<b>pb-bob</b>"]
    await bob_context.close()
    await shown(ann, ["Nobody"])


async def test_a_tab_that_shares_the_stream_starts_from_the_leaders_list(
    browser: Any, page_server: Server
) -> None:
    channel = f"lobby:{unique()}"
    ann_context = await user_context(browser, page_server, "pb-ann2")
    await open_presence(
        await user_context(browser, page_server, "pb-bob2"), page_server, f"channel={channel}"
    )
    first = await open_presence(ann_context, page_server, f"channel={channel}")
    await shown(first, ["<b>pb-ann2</b>", "<b>pb-bob2</b>"])
    # A second tab of the same browser follows the first tab's stream.
    second = await open_presence(ann_context, page_server, f"channel={channel}")
    await shown(second, ["<b>pb-ann2</b>", "<b>pb-bob2</b>"])
    assert await second.evaluate("DjangoSSE.connection.leader") is False
    assert await second.evaluate("window.changes.length") >= 1


async def test_to_others_skips_only_the_tab_that_made_the_change(
    browser: Any, page_server: Server
) -> None:
    channel = f"lobby:{unique()}"
    context = await user_context(browser, page_server, "pb-carol")
    mine = await open_presence(context, page_server, f"channel={channel}&share=0")
    other = await open_presence(context, page_server, f"channel={channel}&share=0")
    ids = (
        await mine.evaluate("DjangoSSE.connectionId"),
        await other.evaluate("DjangoSSE.connectionId"),
    )
    assert ids[0] != ids[1] and len(ids[0]) == 22
    assert await mine.evaluate(f"window.publishToOthers({json.dumps(channel)}, {{n: 1}})") == 200
    assert await other.evaluate(f"window.publishToOthers({json.dumps(channel)}, {{n: 2}})") == 200
    for page, want in ((mine, [{"n": 2}]), (other, [{"n": 1}])):
        await page.wait_for_function("() => document.querySelectorAll('#log li').length >= 1")
        texts = await page.locator("#log li").all_text_contents()
        assert [json.loads(t) for t in texts] == want
