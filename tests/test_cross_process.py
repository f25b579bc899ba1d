"""Several processes over a real Redis with RedisPubSubChannelLayer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from django_sse.names import group_name
from tests.servers import (
    RedisServer,
    Server,
    publish_from_another_process,
    running_server,
)
from tests.sse_client import open_stream, unique, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.server]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=50)) as c:
        yield c


async def test_publish_from_a_third_process_reaches_both_servers(
    redis_servers: tuple[Server, Server],
    redis_url: str,
    server_db: str,
    client: httpx.AsyncClient,
) -> None:
    channel = f"news:{unique()}"
    one, two = redis_servers
    async with (
        open_stream(client, f"{one.url}/sse/?channel={channel}") as s1,
        open_stream(client, f"{two.url}/sse/?channel={channel}&channel=public") as s2,
    ):
        await publish_from_another_process(redis_url, server_db, channel, 3, "worker")
        got1 = await s1.collect(3)
        got2 = await s2.collect(3)
    for got in (got1, got2):
        assert [json.loads(e.data)["n"] for e in got] == [0, 1, 2]
        assert {e.event for e in got} == {"worker"}
        assert len({e.id for e in got}) == 3


async def test_burst_across_processes_loses_nothing(
    redis_servers: tuple[Server, Server],
    redis_url: str,
    server_db: str,
    client: httpx.AsyncClient,
) -> None:
    channel = f"news:{unique()}"
    count, per_server = 1000, 10
    ready = asyncio.Event()
    opened: list[int] = []

    async def subscriber(server: Server) -> list[int]:
        async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
            opened.append(1)
            if len(opened) == 2 * per_server:
                ready.set()
            events = await stream.collect(count, timeout=90)
            return [json.loads(e.data)["n"] for e in events]

    tasks = [
        asyncio.create_task(subscriber(server))
        for server in redis_servers
        for _ in range(per_server)
    ]
    await asyncio.wait_for(ready.wait(), 30)
    await publish_from_another_process(redis_url, server_db, channel, count)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    assert all(got == list(range(count)) for got in results)


async def test_disconnect_leaves_the_redis_group_within_a_second(
    redis_servers: tuple[Server, Server],
    redis_url: str,
    server_db: str,
    client: httpx.AsyncClient,
) -> None:
    channel = f"news:{unique()}"
    redis = aioredis.from_url(redis_url)
    key = f"asgi__group__{group_name(channel)}"

    async def numsub() -> int:
        [(_, count)] = await redis.pubsub_numsub(key)
        return int(count)

    try:
        async with open_stream(client, f"{redis_servers[0].url}/sse/?channel={channel}"):
            async with open_stream(client, f"{redis_servers[0].url}/sse/?channel={channel}"):
                assert await numsub() == 1  # one process, one subscription
            assert await numsub() == 1

        async def left() -> bool:
            return await numsub() == 0

        await wait_until(left, timeout=1.0)
    finally:
        await redis.aclose()


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_redis_restart_keeps_streams_open_and_delivering(
    kind: str, private_redis_server: RedisServer, server_db: str, client: httpx.AsyncClient
) -> None:
    url = private_redis_server.url
    channel = f"news:{unique()}"
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": url,
        "SSE_KEEPALIVE": "0.5",
    }
    with running_server(kind, **env) as server:
        async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
            await publish_from_another_process(url, server_db, channel, 1, "before")
            [before] = await stream.collect(1)
            assert before.event == "before"

            private_redis_server.kill()
            private_redis_server.start()

            # The stream stays open across the outage and receives again once the
            # hub is back in its group. Publish until one arrives (bounded).
            stop = asyncio.Event()

            async def publish_loop() -> None:
                for _ in range(100):
                    if stop.is_set():
                        return
                    try:
                        await publish_from_another_process(url, server_db, channel, 1, "after")
                    except AssertionError:
                        pass  # Redis not accepting yet
                    await asyncio.sleep(0.3)

            publisher = asyncio.create_task(publish_loop())
            try:
                [after] = await stream.collect(1, name="after", timeout=60)
            finally:
                stop.set()
                await asyncio.wait_for(publisher, 90)
            assert after.event == "after"
        assert server.proc.poll() is None
