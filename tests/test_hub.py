"""The per-process hub against real layers: in-memory and a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from channels_redis.pubsub import RedisPubSubChannelLayer
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


# -- lifecycle: a stopped hub is gone, a failed start leaves nothing ---------


def closed_port() -> int:
    from tests.servers import free_port

    return free_port()  # nothing listens there


async def test_stop_forgets_the_hub_and_every_task(redis_layer: str) -> None:
    hub = get_hub()
    sub = await hub.subscribe(("life",), 10)
    assert hub._tasks
    await hub.stop()
    assert sub.close_reason == "shutdown"
    assert not [t for t in hub._tasks if not t.done()]
    # The next caller gets a hub that works, not the dead one.
    fresh = get_hub()
    assert fresh is not hub
    again = await fresh.subscribe(("life",), 10)
    await asend_event("life", "e", 1)
    await wait_until(lambda: len(again) == 1)
    await fresh.stop()

    async def left() -> bool:
        return await numsub(redis_layer, "life") == 0

    await wait_until(left, 5)


async def test_a_hub_whose_layer_never_answers_starts_and_stops_with_no_task_left() -> None:
    layer = pubsub_layer(f"redis://127.0.0.1:{closed_port()}/0")
    with override_settings(CHANNEL_LAYERS=layer, SSE_PUBLISH_TIMEOUT=0.2):
        hub = get_hub()
        sub = await asyncio.wait_for(hub.subscribe(("late",), 10), 5)
        assert not sub.closed  # served from the store meanwhile
        assert hub.channel_name is None
        await hub.stop()
    assert not hub._tasks


async def test_a_hub_started_while_redis_is_down_connects_when_it_is_back(
    private_redis_server: RedisServer,
) -> None:
    """A resume storm can start a process's hub while Redis is down, or while
    the loop is too busy for the connect to finish in time: the streams open
    and the hub joins their groups once the layer answers."""
    private_redis_server.kill()
    with override_settings(
        CHANNEL_LAYERS=pubsub_layer(private_redis_server.url), SSE_PUBLISH_TIMEOUT=0.3
    ):
        hub = get_hub()
        sub = await asyncio.wait_for(hub.subscribe(("late",), 1000), 5)
        assert not sub.closed and hub.channel_name is None
        private_redis_server.start()
        group = hub.membership.groups["late"]
        await wait_until(lambda: hub.channel_name is not None and group.joined, 30)

        async def delivered() -> bool:
            try:
                await asend_event("late", "e", "back")
            except Exception:
                return False
            return len(sub) > 0

        await wait_until(delivered, 30, interval=0.2)
        assert not sub.closed
        await hub.stop()
    assert not hub._tasks


def test_closed_loops_are_forgotten() -> None:
    from django_sse import hub as hubs

    loop = asyncio.new_event_loop()

    async def make() -> Hub:
        return get_hub()

    made = loop.run_until_complete(make())
    assert made in hubs.local_hubs()
    loop.close()
    assert made not in hubs.local_hubs()
    assert loop not in hubs._hubs


async def test_stop_lets_served_streams_write_their_close() -> None:
    from django_sse.stream import event_stream

    chunks: list[bytes] = []
    stream = event_stream(("stopping",))

    async def read() -> None:
        async for chunk in stream:
            chunks.append(chunk)

    reader = asyncio.ensure_future(read())
    hub = get_hub()
    await wait_until(lambda: hub.subscribers("stopping") == 1)
    await asyncio.wait_for(hub.stop(), 5)
    await asyncio.wait_for(reader, 5)
    assert chunks[-1].endswith(
        b'event: stream-closed\ndata: {"reason":"shutdown","reconnect":true}\n\n'
    )


# -- a foreign message is logged and skipped; the receiver lives on ----------


async def test_foreign_messages_do_not_stop_delivery(
    redis_layer: str, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    from django_sse.events import build_event
    from django_sse.hub import CONTROL_GROUP, to_message

    sub = await hub.subscribe(("foreign",), 100)
    layer = hub.layer
    group = group_name("foreign")
    foreign: list[Any] = [
        ["not", "a", "dict"],
        "text",
        {"type": "some.other.app"},
        {"type": "sse.event", "channel": "foreign"},  # fields missing
        # A sequence number that is not a number would poison later comparisons.
        {
            "type": "sse.event",
            "channel": "foreign",
            "name": "e",
            "id": "x",
            "body": b"",
            "seq": "zz",
        },
        {"type": "sse.event", "channel": ["foreign"], "name": "e", "id": "x", "body": b""},
        {"type": "sse.revoke", "owner": {"pk": 1}},
    ]
    for message in foreign:
        await layer.group_send(group, message)
        await layer.group_send(CONTROL_GROUP, message)
    event = build_event("foreign", "e", {"n": 1}).stored(1)
    await layer.group_send(group, to_message(event))
    await wait_until(lambda: len(sub) == 1, 5)
    assert sub.drain()[0].seq == 1
    assert not sub.closed
    assert "Ignoring a hub message" in caplog.text


async def test_a_loop_that_dies_is_restarted(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    done = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        done.set()
        await asyncio.Event().wait()

    hub._keep_running(flaky, "test loop")
    await asyncio.wait_for(done.wait(), 5)
    assert len(runs) == 3
    assert caplog.text.count("The hub's test loop failed") == 2


# -- membership races ----------------------------------------------------------


async def test_a_stream_gone_while_joining_leaves_no_empty_group(
    redis_layer: str, hub: Hub
) -> None:
    # A client that disconnects while its stream's first join is in flight
    # (the request is cancelled inside group_add, the group's lock held).
    await hub.start()
    for n in range(20):
        channel = f"joining{n}"
        task = asyncio.ensure_future(hub.subscribe((channel,), 10))
        for _ in range(1000):
            await asyncio.sleep(0)
            group = hub._groups.get(channel)
            if (group is not None and group.lock.locked()) or task.done():
                break
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            hub.unsubscribe(task.result())  # the join won the race: leave normally
    await wait_until(lambda: not hub._groups, 5)

    async def none_left() -> bool:
        counts = [await numsub(redis_layer, f"joining{n}") for n in range(20)]
        return not any(counts)

    await wait_until(none_left, 5)


class GatedPubSubLayer(RedisPubSubChannelLayer):  # type: ignore[misc]
    """The real Redis pub/sub layer, whose ``group_add`` for one group can be
    held at a gate: a re-join caught in flight, deterministically."""

    held = group_name("rejoin-race")
    gate: asyncio.Event | None = None
    entered: asyncio.Event | None = None
    added: asyncio.Event | None = None

    async def group_add(self, group: str, channel: str) -> None:
        cls = type(self)
        if group == cls.held and cls.gate is not None:
            assert cls.entered is not None and cls.added is not None
            cls.entered.set()
            await cls.gate.wait()
            await self._get_layer().group_add(group, channel)
            cls.added.set()
            return
        await self._get_layer().group_add(group, channel)


async def test_a_leave_during_a_rejoin_leaves_redis_subscribed_to_nothing(
    redis_url: str,
) -> None:
    # The maintenance loop re-joins a group while its last stream leaves: the
    # leave must wait for the re-join (or the re-join see the leave), else Redis
    # stays subscribed to a group this hub no longer tracks, for good.
    layers = {
        "default": {"BACKEND": "tests.test_hub.GatedPubSubLayer", "CONFIG": {"hosts": [redis_url]}}
    }
    with override_settings(CHANNEL_LAYERS=layers):
        hub = get_hub()
        try:
            sub = await hub.subscribe(("rejoin-race",), 10)
            assert await numsub(redis_url, "rejoin-race") == 1
            GatedPubSubLayer.gate = asyncio.Event()
            GatedPubSubLayer.entered = asyncio.Event()
            GatedPubSubLayer.added = asyncio.Event()
            hub.membership.rejoin.set()
            await asyncio.wait_for(GatedPubSubLayer.entered.wait(), 5)  # re-join in flight
            hub.unsubscribe(sub)  # the last stream goes meanwhile
            for _ in range(100):  # give the leave every chance to run first
                await asyncio.sleep(0)
            GatedPubSubLayer.gate.set()
            await asyncio.wait_for(GatedPubSubLayer.added.wait(), 5)
            await wait_until(lambda: "rejoin-race" not in hub.membership.groups, 5)

            async def unsubscribed() -> bool:
                return await numsub(redis_url, "rejoin-race") == 0

            await wait_until(unsubscribed, 5)
        finally:
            GatedPubSubLayer.gate = None
            await hub.stop()
