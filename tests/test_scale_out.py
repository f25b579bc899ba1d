"""Several server processes behind one nginx port, sharing one Redis: a
publish from another process reaches the streams on every one of them."""

from __future__ import annotations

from contextlib import AsyncExitStack, ExitStack

import httpx
import pytest

from tests.servers import (
    Server,
    nginx_binary,
    publish_from_another_process,
    running_nginx,
    running_server,
)
from tests.sse_client import open_stream, unique, wait_until

pytestmark = [
    pytest.mark.redis,
    pytest.mark.server,
    pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed"),
]

#: Both servers and both doors behind one port.
BACKENDS = [("uvicorn", "fast"), ("daphne", "view"), ("uvicorn", "fast")]
STREAMS = 6


async def test_a_publish_reaches_streams_on_every_process_behind_nginx(
    redis_url: str, server_db: str
) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "redis", "REDIS_URL": redis_url}
    channel = f"news:{unique('scale')}"
    with ExitStack() as processes:
        backends: list[Server] = [
            processes.enter_context(running_server(kind, **env, SSE_TEST_DOOR=door))
            for kind, door in BACKENDS
        ]
        port = processes.enter_context(running_nginx([b.port for b in backends]))
        async with httpx.AsyncClient(timeout=20.0) as client, AsyncExitStack() as streams:
            opened = [
                await streams.enter_async_context(
                    open_stream(client, f"http://127.0.0.1:{port}/sse/?channel={channel}")
                )
                for _ in range(STREAMS)
            ]
            assert all(s.response.status_code == 200 for s in opened)
            assert opened[0].response.headers["content-type"].startswith("text/event-stream")

            counts: list[int] = []

            async def spread() -> bool:
                counts[:] = [
                    (await client.get(f"{b.url}/test/stats/?channel={channel}")).json()[
                        "subscribers"
                    ]
                    for b in backends
                ]
                return sum(counts) == STREAMS

            await wait_until(spread)
            # Round robin: nginx gave every process some of the streams.
            assert all(n >= 1 for n in counts), counts

            await publish_from_another_process(redis_url, server_db, channel, 3, "worker")
            for stream in opened:
                events = await stream.collect(3, name="worker")
                assert [(e.event, e.json()["n"]) for e in events] == [
                    ("worker", 0),
                    ("worker", 1),
                    ("worker", 2),
                ]
