"""The Live page's reports, in-process: what a hub says about itself, and
what the page accepts from the layer."""

from __future__ import annotations

import asyncio

import pytest

from django_sse import live
from django_sse.hub import Hub, get_hub


async def test_a_hub_reports_its_streams_and_busiest_channels() -> None:
    hub = Hub(asyncio.get_running_loop())
    try:
        subs = [await hub.subscribe(("a",), 10) for _ in range(3)]
        subs.append(await hub.subscribe(("a", "b"), 10))
        report = live.report(hub)
        assert (report.streams, report.channels) == (4, 2)
        assert report.top == [("a", 4), ("b", 1)]
        assert report.states == {"open": 4}
        for sub in subs:
            hub.unsubscribe(sub)
        assert live.report(hub).streams == 0
        assert live.report(hub).top == []
    finally:
        await hub.stop(grace=0.1)


async def test_a_report_crosses_the_layer_and_malformed_ones_are_refused() -> None:
    report = live.Report("host:1", 5, 2, [("a", 4), ("b", 1)], {"live": 5})
    assert live.Report.from_message(report.as_message()) == report
    long = live.Report("x" * 500, 1, 1, [(f"c{i}", 1) for i in range(500)])
    bounded = live.Report.from_message(long.as_message())
    assert len(bounded.process) == 200 and len(bounded.top) == live.TOP_CHANNELS
    for bad in ({}, {**report.as_message(), "streams": "many"}, {**report.as_message(), "top": 3}):
        with pytest.raises((KeyError, TypeError, ValueError)):
            live.Report.from_message(bad)


async def test_a_hub_answers_only_a_reply_channel_of_the_page() -> None:
    hub = Hub(asyncio.get_running_loop())
    try:
        for reply in (
            None,
            3,
            "sse.hub.someone-else",
            "x" * 300 + live.REPLY_PREFIX,
            f"chat.{live.REPLY_PREFIX}1",
        ):
            with pytest.raises(TypeError):
                live.answer(hub, {"type": live.STATS_TYPE, "reply": reply})
    finally:
        await hub.stop(grace=0.1)


def test_the_busiest_channels_are_summed_over_processes() -> None:
    one = live.Report("one", 3, 2, [("a", 2), ("b", 1)])
    two = live.Report("two", 4, 2, [("b", 3), ("c", 1)])
    assert live.merged_top([one, two]) == [("b", 4), ("a", 2), ("c", 1)]
    assert live.merged_top([one, two], limit=1) == [("b", 4)]


async def test_with_the_in_memory_layer_the_page_reads_this_process() -> None:
    hub = get_hub()
    try:
        await hub.subscribe(("a",), 10)
        reports, problem = await live.gather()
        assert problem is None
        assert [r.streams for r in reports] == [1]
    finally:
        await hub.stop(grace=0.1)


def test_a_hub_on_another_threads_loop_reports_from_that_loop() -> None:
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        hub = asyncio.run_coroutine_threadsafe(_hub_with_streams(2), loop).result(10)
        reports, _ = asyncio.run(live.gather())
        assert [r.streams for r in reports] == [2]
        asyncio.run_coroutine_threadsafe(hub.stop(grace=0.1), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _hub_with_streams(count: int) -> Hub:
    hub = get_hub()
    for _ in range(count):
        await hub.subscribe(("a",), 10)
    return hub


@pytest.mark.redis
async def test_the_pages_reply_channel_is_unsubscribed_even_at_the_answer_limit(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    # The limit reached at once: the page must still end its subscription
    # (pub/sub ends it when a receive is cancelled), or every page view
    # would leave one, with a queue for the answers that come late.
    monkeypatch.setattr(live, "MAX_PROCESSES", 0)
    with override_settings(CHANNEL_LAYERS=layers):
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        assert layer is not None
        try:
            for _ in range(3):
                await live.gather(wait=0.05)
            loop_layer = layer._get_layer()
            left = [c for c in loop_layer.channels if live.REPLY_PREFIX in c]
            assert left == []
        finally:
            await layer.flush()
