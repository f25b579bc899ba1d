"""Django's LoginRequiredMiddleware in front of the streams, and a profile page
(``DetailView(model=User)``) using ``{% sse_script %}``, in a real Chromium."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import Server, running_server


async def publish(client: httpx.AsyncClient, base: str, channel: str, **body: Any) -> None:
    response = await client.post(f"{base}/test/js/publish/", json={"channel": channel, **body})
    response.raise_for_status()


pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]

LOGIN_REQUIRED = "tests.settings_login_required"


@pytest.fixture(scope="module", params=["fast", "view"])
def strict_server(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    """A server whose every view needs a login unless marked login_not_required."""
    with running_server(
        "daphne",
        DJANGO_SETTINGS_MODULE=LOGIN_REQUIRED,
        SSE_TEST_DB=server_db,
        SSE_TEST_DOOR=request.param,
        SSE_KEEPALIVE="0.5",
    ) as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


async def test_anonymous_streams_and_the_token_endpoint_answer_for_themselves(
    strict_server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=strict_server.url, timeout=10) as client:
        # The middleware is on: an ordinary test view redirects to the login page.
        assert (await client.get("/test/stats/")).status_code == 302
        refused = await client.get("/sse/", params={"channel": "staff"})
        assert refused.status_code == 403 and "staff" in refused.text
        token = await client.post("/sse/token/", data={"channel": "news:lr"})
        assert token.status_code == 403, token.headers
        assert "anonymous users cannot get stream tokens" in token.text


async def test_an_anonymous_page_streams_a_public_channel(
    browser: Any, strict_server: Server
) -> None:
    channel = "news:login-required"
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{strict_server.url}/test/js/page/?channel={channel}&retry=50")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    async with httpx.AsyncClient(timeout=10) as client:
        await publish(client, strict_server.url, channel, data={"n": 1})
    await page.wait_for_function(
        "document.querySelectorAll('#log li').length === 1", timeout=TIMEOUT
    )
    assert json.loads(await page.text_content("#log li") or "") == {"n": 1}


async def test_a_redirect_to_a_login_page_is_a_refusal_not_a_retry(
    browser: Any, strict_server: Server
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{strict_server.url}/test/js/page/?channel=news:o&own=0")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    requests: list[str] = []
    page.on(
        "request",
        lambda r: requests.append(r.url) if urlsplit(r.url).path == "/test/stats/" else None,
    )
    # /test/stats/ is not login_not_required: anonymous requests are sent to a
    # 200 HTML login page.
    await page.evaluate(
        """() => {
          window.guarded = DjangoSSE.connect({
            url: "/test/stats/", channels: ["news:x"], retryBase: 50, share: false,
          });
        }"""
    )
    await page.wait_for_function("window.guarded.state === 'denied'", timeout=TIMEOUT)
    reason = await page.evaluate("window.guarded.reason")
    assert reason.startswith("redirected to ") and "/test/js/login/" in reason
    seen = len(requests)
    assert seen == 2  # the EventSource and the probe
    # With a 50 ms retry base, a helper that kept retrying would have tried many times.
    await page.wait_for_timeout(800)
    assert len(requests) == seen


async def test_a_user_profile_page_streams_the_viewers_channel_not_the_viewed_users(
    browser: Any, server_db: str
) -> None:
    with running_server("daphne", SSE_TEST_DB=server_db, SSE_KEEPALIVE="0.5") as srv:
        context = await browser.new_context()
        viewed = (await (await context.request.get(f"{srv.url}/test/login/?username=lr-b")).json())[
            "pk"
        ]
        viewer = (await (await context.request.get(f"{srv.url}/test/login/?username=lr-a")).json())[
            "pk"
        ]
        page = await context.new_page()
        await page.goto(f"{srv.url}/test/js/users/{viewed}/")
        assert await page.text_content("#name") == "lr-b"
        await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
        config = json.loads(await page.text_content("#django-sse-config") or "")
        assert config["channels"] == [f"user:{viewer}"]
        async with httpx.AsyncClient(timeout=10) as client:
            await publish(client, srv.url, f"user:{viewed}", event="notification", data={"to": "b"})
            await publish(client, srv.url, f"user:{viewer}", event="notification", data={"to": "a"})
        await page.wait_for_function(
            "document.querySelectorAll('#log li').length === 1", timeout=TIMEOUT
        )
        assert await page.locator("#log li").all_text_contents() == ['{"to":"a"}']
