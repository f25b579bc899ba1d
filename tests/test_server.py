"""The stream endpoint served by real daphne and uvicorn processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.servers import Server
from tests.sse_client import login, open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as c:
        yield c


async def subscribers(client: httpx.AsyncClient, server: Server, channel: str) -> int:
    response = await client.get(f"{server.url}/test/stats/", params={"channel": channel})
    return int(response.json()["subscribers"])


async def test_headers_and_first_chunk(server: Server, client: httpx.AsyncClient) -> None:
    url = f"{server.url}/sse/?channel=public"
    # Accept-Encoding: gzip and GZipMiddleware is on: the stream must stay uncompressed.
    async with open_stream(client, url, headers={"Accept-Encoding": "gzip"}) as stream:
        r = stream.response
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers.get("content-encoding", "identity") == "identity"
        assert stream.hello.startswith("retry: 3000\n")


async def test_first_chunk_is_raw_retry_and_comment(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"GET /sse/?channel=public HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n"
    )
    await writer.drain()
    data = b""
    while b": connected\n" not in data:
        chunk = await asyncio.wait_for(reader.read(4096), 5)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    # One block-less chunk: no blank line, which would end a block without data.
    assert b"retry: 3000\n: connected\n" in data
    assert b"connected\n\n" not in data
    writer.close()


async def test_event_delivery_fields(server: Server, client: httpx.AsyncClient) -> None:
    channel = f"news:{unique()}"
    async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
        await publish(client, server.url, channel, event="headline", data={"text": "hi", "n": 1})
        await publish(
            client, server.url, channel, event="html", data="<b>one</b>\n<i>two</i>", markup=True
        )
        first, second = await stream.collect(2)
    assert first.event == "headline" and json.loads(first.data) == {"text": "hi", "n": 1}
    assert second.event == "html" and second.data == "<b>one</b>\n<i>two</i>"
    assert first.id and second.id and first.id != second.id


async def test_multi_channel_stream_gets_its_channels_in_order(
    server: Server, client: httpx.AsyncClient
) -> None:
    a, b, c = (f"news:{unique()}" for _ in range(3))
    async with open_stream(client, f"{server.url}/sse/?channel={a}&channel={b}") as stream:
        for channel in (a, c, b, a, c, b):
            await publish(client, server.url, channel, data=channel)
        got = await stream.collect(4)
    assert [json.loads(e.data) for e in got] == [a, b, a, b]


async def test_sync_view_send_event_is_delivered(server: Server, client: httpx.AsyncClient) -> None:
    channel = f"news:{unique()}"
    async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
        response = await client.post(
            f"{server.url}/test/publish-sync/", json={"channel": channel, "data": {"sync": True}}
        )
        response.raise_for_status()
        [event] = await stream.collect(1)
    assert json.loads(event.data) == {"sync": True}


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        ("", 400, "no channel requested"),
        ("?channel=bad%20name", 400, "malformed"),
        ("?channel=-x", 400, "malformed"),
        ("?channel=" + "x" * 101, 400, "101 characters"),
        ("?" + "&".join(f"channel=news:{i}" for i in range(11)), 400, "too many channels"),
        ("?channel=nowhere", 404, "matches no registered channel"),
        ("?channel=public&channel=nowhere", 404, "'nowhere'"),
        ("?channel=members", 403, "anonymous users are not allowed"),
        ("?channel=staff", 403, "not allowed"),
        ("?channel=ticket:2", 403, "not allowed"),
        ("?channel=user:1", 403, "not allowed"),
        ("?channel=room:shut", 403, "not allowed"),
        ("?channel=auditors", 403, "not allowed"),
    ],
)
async def test_anonymous_errors(
    server: Server, client: httpx.AsyncClient, query: str, status: int, reason: str
) -> None:
    response = await client.get(f"{server.url}/sse/{query}")
    assert response.status_code == status
    assert reason in response.text
    assert response.text.count("\n") == 1 and response.text.endswith("\n")
    assert response.headers["content-type"].startswith("text/plain")


async def test_errors_subscribe_nothing(server: Server, client: httpx.AsyncClient) -> None:
    channel = f"news:{unique()}"
    response = await client.get(f"{server.url}/sse/?channel={channel}&channel=staff")
    assert response.status_code == 403
    assert await subscribers(client, server, channel) == 0


async def test_authenticated_access(server: Server, client: httpx.AsyncClient) -> None:
    name = unique("u")
    pk = await login(client, server.url, name)

    async def status(query: str) -> int:
        async with client.stream("GET", f"{server.url}/sse/?{query}") as response:
            return response.status_code

    assert await status("channel=members") == 200
    assert await status("channel=ticket:2") == 200
    assert await status("channel=ticket:3") == 403
    assert await status("channel=room:open-1") == 200
    assert await status("channel=staff") == 403
    assert await status(f"channel=user:{pk}") == 200
    assert await status(f"channel=user:{pk + 1000}") == 403
    assert await status("channel=auditors") == 403

    staff = httpx.AsyncClient(timeout=15.0)
    async with staff:
        await login(staff, server.url, unique("s"), staff="1", perm="auth.view_user")
        async with staff.stream("GET", f"{server.url}/sse/?channel=staff") as response:
            assert response.status_code == 200
        async with staff.stream("GET", f"{server.url}/sse/?channel=auditors") as response:
            assert response.status_code == 200


async def test_user_channel_delivers_to_its_owner(
    server: Server, client: httpx.AsyncClient
) -> None:
    pk = await login(client, server.url, unique("owner"))
    async with open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as stream:
        await publish(client, server.url, f"user:{pk}", event="notification", data={"m": 1})
        [event] = await stream.collect(1)
    assert event.event == "notification"


async def test_post_is_not_allowed(server: Server, client: httpx.AsyncClient) -> None:
    response = await client.post(f"{server.url}/sse/?channel=public")
    assert response.status_code == 405


async def test_keepalive_comments_while_idle(server: Server) -> None:
    # The server runs with SSE_KEEPALIVE=0.5.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /sse/?channel=public HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    data = b""
    while data.count(b": keepalive\n") < 2:
        chunk = await asyncio.wait_for(reader.read(4096), 5)
        assert chunk, data
        data += chunk
    assert b"keepalive\n\n" not in data
    writer.close()


async def test_disconnect_is_forgotten_within_a_second(
    server: Server, client: httpx.AsyncClient
) -> None:
    channel = f"news:{unique()}"
    async with open_stream(client, f"{server.url}/sse/?channel={channel}"):
        assert await subscribers(client, server, channel) == 1

    async def gone() -> bool:
        return await subscribers(client, server, channel) == 0

    await wait_until(gone, timeout=1.0)


async def test_resume_without_history_sends_stream_reset(
    server: Server, client: httpx.AsyncClient
) -> None:
    channel = f"news:{unique()}"
    for url, headers in [
        (f"{server.url}/sse/?channel={channel}", {"Last-Event-ID": "abc"}),
        (f"{server.url}/sse/?channel={channel}&lastEventId=abc", {}),
    ]:
        async with open_stream(client, url, headers=headers) as stream:
            [reset] = await stream.collect(1)
            assert reset.event == "stream-reset"
            await publish(client, server.url, channel, data="live")
            [live] = await stream.collect(1)
            assert live.data == '"live"'  # a str is JSON


async def test_burst_of_1000_to_20_subscribers(server: Server, client: httpx.AsyncClient) -> None:
    channel = f"news:{unique()}"
    count, subscribers_n = 1000, 20
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=50)) as many:

        async def subscriber(ready: asyncio.Event, opened: list[int]) -> list[str]:
            async with open_stream(many, f"{server.url}/sse/?channel={channel}") as stream:
                opened.append(1)
                if len(opened) == subscribers_n:
                    ready.set()
                events = await stream.collect(count, timeout=60)
                return [e.data for e in events]

        ready = asyncio.Event()
        opened: list[int] = []
        tasks = [asyncio.create_task(subscriber(ready, opened)) for _ in range(subscribers_n)]
        await asyncio.wait_for(ready.wait(), 30)
        await publish(client, server.url, channel, count=count)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 90)
    expected = [json.dumps({"n": i}, separators=(",", ":")) for i in range(count)]
    for got in results:
        assert got == expected
