"""The per-process hub against real layers: in-memory and a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from django.test import override_settings

from django_sse import asend_event
from django_sse.hub import Hub, Subscription, get_hub
from django_sse.names import group_name
from tests.servers import RedisServer
from tests.sse_client import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture(autouse=True)
def _no_history(settings: Any) -> None:
    # These tests are about the layer; history has tests of its own.
    settings.SSE_STORE = None


def pubsub_layer(url: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [url]},
        }
    }


@pytest.fixture
def redis_layer(redis_url: str) -> Iterator[str]:
    with override_settings(CHANNEL_LAYERS=pubsub_layer(redis_url)):
        yield redis_url


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = get_hub()
    yield hub
    await hub.stop()


async def numsub(url: str, channel: str) -> int:
    client = aioredis.from_url(url)
    try:
        [(_, count)] = await client.pubsub_numsub(f"asgi__group__{group_name(channel)}")
        return int(count)
    finally:
        await client.aclose()


async def test_in_memory_hub_has_no_layer_channel() -> None:
    hub = get_hub()
    sub = await hub.subscribe(("m",), 5)
    assert hub.channel_name is None
    await asend_event("m", "e", 1)
    assert len(sub) == 1
    await hub.stop()


async def test_overflow_closes_only_the_slow_stream() -> None:
    hub = get_hub()
    slow = await hub.subscribe(("o",), 3)
    fast = await hub.subscribe(("o",), 100)
    for i in range(5):
        await asend_event("o", "e", i)
    assert slow.close_reason == "overflow" and len(slow) == 3
    assert fast.close_reason is None and len(fast) == 5
    await hub.stop()


async def test_wait_wakes_on_event_and_when_a_keepalive_is_due() -> None:
    hub = get_hub()
    sub = await hub.subscribe(("w",), 5, keepalive=0.1)
    start = time.monotonic()
    await asyncio.wait_for(sub.wait(), 5)  # nothing published: the ticker wakes it
    assert sub.keepalive_due and not len(sub)
    assert time.monotonic() - start >= 0.09
    sub.wrote()
    assert not sub.keepalive_due
    waiter = asyncio.ensure_future(sub.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    await asend_event("w", "e", 1)
    await asyncio.wait_for(waiter, 5)
    assert len(sub) == 1
    await hub.stop()


async def test_one_layer_channel_and_refcounted_groups(redis_layer: str, hub: Hub) -> None:
    subs: list[Subscription] = [await hub.subscribe(("rc",), 10) for _ in range(3)]
    assert hub.channel_name is not None
    assert await numsub(redis_layer, "rc") == 1  # one subscription for three streams
    await asend_event("rc", "e", {"n": 1})
    await wait_until(lambda: all(len(s) == 1 for s in subs))
    hub.unsubscribe(subs[0])
    hub.unsubscribe(subs[1])
    assert hub.stats()["streams"] == 1
    assert await numsub(redis_layer, "rc") == 1
    hub.unsubscribe(subs[2])
    assert hub.stats()["streams"] == 0

    async def left() -> bool:
        return await numsub(redis_layer, "rc") == 0

    await wait_until(left, 1.0)


async def test_resubscribe_while_leaving_keeps_membership(redis_layer: str, hub: Hub) -> None:
    first = await hub.subscribe(("race",), 10)
    hub.unsubscribe(first)  # schedules the leave
    second = await hub.subscribe(("race",), 10)  # waits out the leave, then joins
    await asend_event("race", "e", 1)
    await wait_until(lambda: len(second) == 1)
    assert await numsub(redis_layer, "race") == 1


async def test_membership_is_refreshed_before_group_expiry(redis_url: str) -> None:
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "group_expiry": 1},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        hub = get_hub()
        assert hub.refresh_interval() == 0.5
        sub = await hub.subscribe(("exp",), 10)
        # Let the original membership expire twice over; refreshes keep it alive.
        deadline = time.monotonic() + 2.5
        await wait_until(lambda: time.monotonic() >= deadline, 5)
        await asend_event("exp", "e", 1)
        await wait_until(lambda: len(sub) == 1, 5)
        await hub.stop()


async def test_redis_outage_keeps_streams_and_rejoins(private_redis_server: RedisServer) -> None:
    with override_settings(CHANNEL_LAYERS=pubsub_layer(private_redis_server.url)):
        hub = get_hub()
        sub = await hub.subscribe(("out",), 1000)
        await asend_event("out", "e", 0)
        await wait_until(lambda: len(sub) == 1)
        sub.drain()

        private_redis_server.kill()
        with pytest.raises(Exception):  # noqa: B017  (the layer's own connection error)
            await asend_event("out", "e", "lost")
        # A stream opened during the outage is accepted, and joined later.
        late = await hub.subscribe(("late",), 1000)
        assert not sub.closed and not late.closed

        private_redis_server.start()

        async def delivered() -> bool:
            try:
                await asend_event("out", "e", "back")
                await asend_event("late", "e", "back")
            except Exception:
                return False
            return len(sub) > 0 and len(late) > 0

        await wait_until(delivered, 30, interval=0.2)
        assert not sub.closed and not late.closed
        await hub.stop()
