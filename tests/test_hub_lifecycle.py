"""The hub's start and stop against slow, stalled and cancelled callers.

The layers here stand in for a Redis that is slow to answer or never does:
the behaviour under test is the hub's own bookkeeping around those awaits."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from django.test import override_settings

from django_sse.hub import Hub, Subscription
from django_sse.subscription import STARTING


@pytest.fixture(autouse=True)
def _no_history(settings: Any) -> None:
    settings.SSE_STORE = None


class SlowLayer:
    """A non-in-memory layer whose first ``new_channel`` is slow."""

    group_expiry = 86400

    async def new_channel(self, prefix: str = "") -> str:
        await asyncio.sleep(0.5)
        return prefix + "x"

    async def group_add(self, group: str, channel: str) -> None:
        pass

    async def group_discard(self, group: str, channel: str) -> None:
        pass

    async def receive(self, channel: str) -> Any:
        await asyncio.Event().wait()


class StalledLayer(SlowLayer):
    """Redis that accepts and never answers: every group call hangs."""

    async def new_channel(self, prefix: str = "") -> str:
        return prefix + "x"

    async def group_add(self, group: str, channel: str) -> None:
        await asyncio.Event().wait()


class StalledLeaveLayer(SlowLayer):
    """A layer whose calls wait for a reply that never comes (RedisChannelLayer's
    group_discard is a ZREM round trip) once Redis stalls."""

    async def new_channel(self, prefix: str = "") -> str:
        return prefix + "x"

    async def group_discard(self, group: str, channel: str) -> None:
        await asyncio.Event().wait()


async def test_a_cancelled_first_subscriber_does_not_cancel_a_concurrent_one() -> None:
    """Hub.start(): the first caller cancelled mid-start puts its CancelledError into
    the shared ``_started`` future; every concurrent subscriber then raises
    CancelledError although nobody cancelled it."""
    hub = Hub(asyncio.get_running_loop())
    hub.layer = hub.membership.layer = SlowLayer()
    try:
        first = asyncio.create_task(hub.subscribe(["a"], 10))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(hub.subscribe(["a"], 10))
        await asyncio.sleep(0.05)
        first.cancel()  # the first client went away during the hub's start
        [result] = await asyncio.gather(second, return_exceptions=True)
        assert isinstance(result, Subscription), repr(result)
    finally:
        await hub.stop(grace=0.1)


async def test_redis_stalled_streams_on_one_channel_do_not_queue_behind_each_other() -> None:
    """Membership.add holds the group lock across a bounded group_add; a join that
    timed out leaves ``joined`` False, so the next stream of the channel waits the
    whole SSE_PUBLISH_TIMEOUT again, under the same lock: N streams resuming onto
    one channel during a stall wait N x timeout before their first byte."""
    hub = Hub(asyncio.get_running_loop())
    hub.layer = hub.membership.layer = StalledLayer()
    loop = asyncio.get_running_loop()
    with override_settings(SSE_PUBLISH_TIMEOUT=0.2):
        await hub.start()  # the control group's join times out once: fine
        try:
            started = loop.time()
            subs = await asyncio.gather(*(hub.subscribe(["a"], 10) for _ in range(10)))
            took = loop.time() - started
        finally:
            await hub.stop(grace=0.1)
    assert len(subs) == 10
    assert took < 0.6, f"10 streams on one channel took {took:.1f}s to subscribe"


async def test_hub_stop_against_a_stalled_layer_is_bounded_not_per_group() -> None:
    """Hub.stop -> Membership.leave_all leaves every group one after another, each
    bounded by SSE_PUBLISH_TIMEOUT: (groups + 1) x 5 s with defaults. The lifespan
    shutdown path (asgi.lifespan -> shutdown.close_streams -> hub.stop) has no
    overall bound, so a process serving 1,000 channels hangs ~83 min at shutdown."""
    hub = Hub(asyncio.get_running_loop())
    hub.layer = hub.membership.layer = StalledLeaveLayer()
    loop = asyncio.get_running_loop()
    with override_settings(SSE_PUBLISH_TIMEOUT=0.1):
        for i in range(20):
            await hub.subscribe([f"c{i}"], 10)
        started = loop.time()
        await hub.stop(grace=0.1)
        took = loop.time() - started
    assert took < 0.5, f"stop took {took:.1f}s for 20 channels"


async def test_a_hub_stopped_while_starting_leaves_no_task_and_no_open_stream() -> None:
    """Hub.stop() during Hub.start()'s layer await (a resume storm hitting a
    process that is being shut down): stop() cancels the tasks spawned so far and
    skips leave_all (``_started`` not done); start() then resumes and spawns the
    layer receiver and membership maintenance on the stopped hub, and subscribe()
    adds a stream that stop() never saw and that is never closed."""
    hub = Hub(asyncio.get_running_loop())
    hub.layer = hub.membership.layer = SlowLayer()
    pending = asyncio.ensure_future(hub.subscribe(["a"], 10))
    await asyncio.sleep(0.1)
    await hub.stop(grace=0.1)
    sub = await pending
    try:
        leaked = sorted(str(t.get_coro()) for t in hub.tasks.running)
        assert (sub.closed, leaked) == (True, []), "open stream / tasks on a stopped hub"
    finally:
        await hub.tasks.cancel_all()


async def test_signal_shutdown_stops_the_hub_tasks_even_when_a_stream_does_not_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """shutdown.GRACE (2 s) < hub.STOP_GRACE (5 s): _close_then's wait_for cancels
    Hub.stop() while it waits for streams, before tasks.cancel_all()/leave_all()."""
    from django_sse import shutdown
    from django_sse.hub import get_hub, local_hubs

    monkeypatch.setattr(shutdown, "GRACE", 0.2)  # STOP_GRACE stays 5.0, as shipped
    hub = get_hub()
    sub = await hub.subscribe(["public"], 10)
    sub.state = STARTING  # served, but its writer is stuck (a client that stopped reading)
    called: list[int] = []
    try:
        await shutdown._close_then(lambda s, f: called.append(s), signal.SIGTERM, None)
        assert called == [signal.SIGTERM]
        assert hub not in local_hubs()
        # The hub is gone from _hubs; nothing will ever stop these again.
        assert not hub.tasks.running, sorted(str(t.get_coro()) for t in hub.tasks.running)
    finally:
        shutdown.closing.clear()
        await hub.tasks.cancel_all()
