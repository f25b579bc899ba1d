"""The metrics under faults, on real servers: a server killed with SIGKILL, a
stalled Redis, a client that stops reading, a database outage."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import postgres_env
from tests.ops_helpers import Samples, one_event_through, post_form, redis_env, scrape, value
from tests.servers import RedisServer, Server, running_server
from tests.sse_client import login, open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as c:
        yield c


async def grown(
    client: httpx.AsyncClient, server: Server, name: str, above: float, **labels: str
) -> Samples:
    """Scrape until ``name{labels}`` is above ``above``; return that scrape."""
    found: dict[str, Samples] = {}

    async def check() -> bool:
        found["s"] = await scrape(client, server.url)
        return value(found["s"], name, **labels) > above

    await wait_until(check, timeout=30.0, interval=0.2)
    return found["s"]


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_stalled_redis_is_counted_as_timeouts_and_the_live_page_still_answers(
    server_db: str, private_redis_server: RedisServer, client: httpx.AsyncClient
) -> None:
    redis = private_redis_server
    assert redis.proc is not None
    channel = f"news:{unique('stall')}"
    env = redis_env(server_db, redis.url, SSE_TEST_METRICS="1", SSE_HISTORY_POLL="0.2")
    with running_server("uvicorn", **env) as server:
        perms = ["django_sse.view_live", "django_sse.publish_event"]
        await login(client, server.url, unique("op"), staff="1", perm=perms)
        async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
            before = await scrape(client, server.url)
            timeouts = value(
                before, "django_sse_layer_errors_total", operation="publish", kind="timeout"
            )
            os.kill(redis.proc.pid, signal.SIGSTOP)
            try:
                # Stored, so published: the layer's timeout is counted, the
                # event comes through the catch-up poll.
                await publish(client, server.url, channel)
                await stream.collect(1, timeout=20.0)
                await grown(
                    client,
                    server,
                    "django_sse_layer_errors_total",
                    timeouts,
                    operation="publish",
                    kind="timeout",
                )
                # Each layer call of the page is bounded by SSE_PUBLISH_TIMEOUT (1 s).
                page = await client.get(f"{server.url}/sse/live/", timeout=10.0)
                assert page.status_code == 200
                assert 'id="sse-problem"' in page.text
                # An unstored event cannot be published: the form says so.
                failed = await post_form(
                    client, server.url, {"channel": "typing:x", "event": "m", "payload": ""}
                )
                assert failed.status_code == 200
                assert "not published: TimeoutError" in failed.text
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            after = await scrape(client, server.url)
            assert (
                value(after, "django_sse_events_published_total")
                == value(before, "django_sse_events_published_total") + 1
            )


# uvicorn: daphne buffers without bound for a client that stops reading, so
# nothing overflows there (DESIGN.md section 3).
@pytest.mark.timeout(180)
async def test_a_client_that_stops_reading_is_counted_as_overflow(
    server_db: str, client: httpx.AsyncClient
) -> None:
    channel = f"news:{unique('slow')}"
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "memory",
        "SSE_TEST_METRICS": "1",
        "SSE_QUEUE_SIZE": "20",
    }
    with running_server("uvicorn", **env) as server:
        before = await scrape(client, server.url)
        overflows = value(before, "django_sse_streams_closed_total", door="asgi", reason="overflow")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /sse/?channel={channel} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        loop = asyncio.get_running_loop()
        head = await loop.run_in_executor(None, sock.recv, 1024)
        assert head.startswith(b"HTTP/1.1 200"), head
        try:
            # 400 x 16 KB, unread: far more than the socket buffers hold.
            await publish(client, server.url, channel, count=400, data="x" * 16000)
        finally:
            sock.close()
        closed = await grown(
            client,
            server,
            "django_sse_streams_closed_total",
            overflows,
            door="asgi",
            reason="overflow",
        )
        assert value(closed, "django_sse_streams_open", door="asgi") == 0


@pytest.mark.postgres
@pytest.mark.timeout(180)
async def test_a_database_outage_is_counted_as_store_errors_and_unavailable_closes(
    postgres_db: str, client: httpx.AsyncClient
) -> None:
    from tests.test_store_outage import CLOSED, database_down, whole_body

    channel = f"news:{unique('db')}"
    env = {
        **postgres_env(postgres_db),
        "SSE_TEST_LAYER": "memory",
        "SSE_TEST_METRICS": "1",
        "SSE_KEEPALIVE": "0.5",
    }
    url = f"/sse/?channel={channel}"
    with running_server("uvicorn", **env) as server:
        await publish(client, server.url, channel)
        before = await scrape(client, server.url)
        reads = value(before, "django_sse_store_errors_total", operation="read")
        with database_down(postgres_db):
            # A stream opened now cannot read its position: it closes, and says why.
            body = await whole_body(client, server.url + url)
            assert body.endswith(CLOSED), body
            during = await grown(
                client, server, "django_sse_store_errors_total", reads, operation="read"
            )
        name = "django_sse_streams_closed_total"
        assert (
            value(during, name, door="asgi", reason="unavailable")
            == value(before, name, door="asgi", reason="unavailable") + 1
        )
        # The database is back: streams and counts go on.
        after = await one_event_through(client, server, channel)
        assert (
            value(after, "django_sse_events_published_total")
            == value(during, "django_sse_events_published_total") + 1
        )
