"""The admin's Live page in a real Chromium: a staff user sees a tab's stream,
publishes through the form, and the tab gets the event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium, screenshot
from tests.servers import Server, running_server
from tests.sse_client import unique

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]


@pytest.fixture(scope="module")
def page_server(server_db: str) -> Iterator[Server]:
    with running_server("uvicorn", SSE_TEST_DB=server_db, SSE_KEEPALIVE="0.5") as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


async def test_staff_see_a_tabs_stream_and_publish_to_it_from_the_live_page(
    browser: Any, page_server: Server
) -> None:
    srv = page_server
    channel = f"news:{unique('br')}"
    reader = await (await browser.new_context()).new_page()
    await reader.goto(f"{srv.url}/test/page/?channel={channel}&own=0&share=0")
    await reader.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)

    staff = await (await browser.new_context()).new_page()
    login = f"{srv.url}/test/login/?username={unique('op')}&staff=1"
    await staff.goto(login + "&perm=django_sse.view_live&perm=django_sse.publish_event")
    await staff.goto(f"{srv.url}/sse/live/")
    row = staff.locator("#sse-channels-table tr", has_text=channel)
    assert await row.locator("td").nth(1).text_content(timeout=TIMEOUT) == "1"
    assert int(await staff.locator("#sse-total-streams").text_content() or "0") >= 1

    await row.locator("a").click()
    await staff.wait_for_url(f"**/sse/live/?channel={channel.replace(':', '%3A')}")
    form = staff.locator("#sse-publish-form")
    assert await form.locator("input[name=channel]").input_value() == channel
    await form.locator("input[name=event]").fill("message")
    await form.locator("textarea[name=payload]").fill('{"headline": "Live page works"}')
    await form.locator("input[type=submit]").click()
    await staff.wait_for_selector("ul.messagelist li.success", timeout=TIMEOUT)
    newest = staff.locator("#sse-recent tr.sse-event").first
    assert "Live page works" in (await newest.text_content() or "")
    await screenshot(staff, "admin-live")

    await reader.wait_for_function(
        "() => document.querySelector('#log') && document.querySelector('#log').textContent"
        ".includes('Live page works')",
        timeout=TIMEOUT,
    )
