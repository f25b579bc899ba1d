"""Limits for everyone, through real servers and both doors: anonymous
streams are counted per client address (or per the trusted proxy's header),
every 429 says when to come back, and refusals never echo request input raw."""

from __future__ import annotations

from contextlib import AsyncExitStack
from urllib.parse import quote

import httpx
import pytest

from django_sse.conf import SETTINGS
from django_sse.limits import RETRY_AFTER
from django_sse.request import MAX_REASON
from tests.servers import running_server
from tests.sse_client import login, open_stream, unique, wait_until

pytestmark = pytest.mark.server

DOORS = [("uvicorn", "fast"), ("daphne", "view")]


def test_anonymous_streams_are_limited_by_default() -> None:
    [setting] = [s for s in SETTINGS if s.name == "SSE_MAX_STREAMS_PER_ADDRESS"]
    assert setting.default == 50
    [header] = [s for s in SETTINGS if s.name == "SSE_CLIENT_IP_HEADER"]
    assert header.default is None  # a client's own header is never trusted by default


def assert_refusal(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    if status == 429:
        assert response.headers["retry-after"] == str(RETRY_AFTER)


@pytest.mark.parametrize(("kind", "door"), DOORS, ids=["-".join(d) for d in DOORS])
async def test_anonymous_streams_per_address_and_users_per_user_get_429_with_retry_after(
    kind: str, door: str, server_db: str
) -> None:
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "memory",
        "SSE_TEST_DOOR": door,
        "SSE_MAX_STREAMS_PER_ADDRESS": "2",
        "SSE_MAX_STREAMS_PER_USER": "1",
    }
    channel = f"news:{unique('lim')}"
    url_path = f"/sse/?channel={channel}"
    with running_server(kind, **env) as server:
        url = server.url + url_path
        async with httpx.AsyncClient(timeout=15.0) as anon, AsyncExitStack() as stack:
            first = await stack.enter_async_context(open_stream(anon, url))
            await stack.enter_async_context(open_stream(anon, url))
            refused = await anon.get(url)
            assert_refusal(refused, 429)
            assert "SSE_MAX_STREAMS_PER_ADDRESS" in refused.text
            # A logged-in user is counted as a user, not as the address.
            async with httpx.AsyncClient(timeout=15.0) as user:
                await login(user, server.url, unique("lim"))
                async with open_stream(user, url) as mine:
                    assert mine.response.status_code == 200
                    again = await user.get(url)
                    assert_refusal(again, 429)
                    assert "SSE_MAX_STREAMS_PER_USER" in again.text
            # A stream that ends gives its place back.
            await first.response.aclose()

            async def reopened() -> bool:
                async with open_stream(anon, url) as stream:
                    return stream.response.status_code == 200

            await wait_until(reopened)


async def test_behind_a_trusted_proxy_the_header_names_the_client(server_db: str) -> None:
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "memory",
        "SSE_MAX_STREAMS_PER_ADDRESS": "1",
        "SSE_CLIENT_IP_HEADER": "X-Forwarded-For",
    }
    channel = f"news:{unique('xff')}"
    with running_server("uvicorn", **env) as server:
        url = f"{server.url}/sse/?channel={channel}"
        async with httpx.AsyncClient(timeout=15.0) as client, AsyncExitStack() as stack:

            def via(client_address: str) -> dict[str, str]:
                # The proxy appends the address it saw to what the client sent.
                return {"X-Forwarded-For": f"6.6.6.6, {client_address}"}

            one = await stack.enter_async_context(open_stream(client, url, headers=via("10.0.0.1")))
            two = await stack.enter_async_context(open_stream(client, url, headers=via("10.0.0.2")))
            assert (one.response.status_code, two.response.status_code) == (200, 200)
            assert_refusal(await client.get(url, headers=via("10.0.0.1")), 429)


HOSTILE = "<script>alert(1)</script>" * 20


@pytest.mark.parametrize(("kind", "door"), DOORS, ids=["-".join(d) for d in DOORS])
async def test_refusals_never_echo_hostile_input_raw(kind: str, door: str, server_db: str) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_TEST_DOOR": door}
    with running_server(kind, **env) as server:
        async with httpx.AsyncClient(timeout=15.0) as client:
            responses = [
                (400, await client.get(f"{server.url}/sse/?channel={quote(HOSTILE)}")),
                (400, await client.get(f"{server.url}/sse/?channel=a&channel={quote(HOSTILE)}")),
                (
                    403,
                    await client.get(
                        f"{server.url}/sse/?channel=public",
                        headers={"Origin": "http://x<img src=x onerror=alert(1)>.example"},
                    ),
                ),
            ]
    for status, response in responses:
        assert_refusal(response, status)
        assert "<" not in response.text and ">" not in response.text, response.text
        assert len(response.text) <= MAX_REASON + 1
