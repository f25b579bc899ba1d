"""The catch-up poll never overflows a healthy stream, through a real server.

A resume storm is the normal case after a deploy: streams replaying from many
points share their channel with streams already up to date. The poll must
leave both alone (the replaying ones read the store anyway), and every client
must end with the complete sequence.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from urllib.parse import urlencode

import httpx
import pytest

from django_sse.ids import single_channel_id
from tests.servers import running_server
from tests.sse_client import open_stream, unique, wait_until
from tests.test_history_servers import (
    RawStream,
    Tracker,
    parse_block,
    read_events,
    run_publisher,
    sse_url,
)

pytestmark = [pytest.mark.server, pytest.mark.redis]


async def read_raw(raw: RawStream, tracker: Tracker, count: int, timeout: float) -> None:
    """Track ``count`` events of ``raw``; fail on any control event."""
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count:
        block = await raw.next_block(max(deadline - time.monotonic(), 0.01))
        assert block is not None, f"the stream ended after {seen} of {count}: {tracker.controls}"
        parsed = parse_block(block)
        if parsed is None:
            continue
        tracker.add(parsed["event"], parsed["id"], parsed["data"])
        assert not tracker.controls, tracker.controls
        seen += 1


# uvicorn: a stream whose client does not read blocks in send(), so it stays
# in its replay while the poll runs (daphne buffers whatever is written).
@pytest.mark.timeout(240)
async def test_catch_up_poll_overflows_no_stream_in_a_resume_storm(
    redis_url: str, server_db: str
) -> None:
    # More than one replay page (1,000 events) of 6 KB each: a stream whose
    # client does not read is stuck inside its first page.
    history, pad, queue = 1500, 6000, 20
    channel = f"news:{unique('storm')}"
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": redis_url,
        "SSE_KEEPALIVE": "0.5",
        "SSE_HISTORY_POLL": "1.0",
        "SSE_QUEUE_SIZE": str(queue),
    }
    starts = [0, 100, 250]
    resuming = [Tracker((channel,)) for _ in starts]
    for tracker, start in zip(resuming, starts, strict=True):
        tracker.positions[channel] = start
    current = Tracker((channel,))

    with running_server("uvicorn", **env) as server:
        await run_publisher(env, [channel], history, "storm", "old", pad)
        current.positions[channel] = history
        raws: list[RawStream] = []
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                async with open_stream(client, sse_url(server, [channel])) as up_to_date:
                    # Within one poll interval of the up-to-date stream, three
                    # streams resume and read nothing, so they stay in their replay.
                    for start in starts:
                        last = single_channel_id(channel, start)
                        query = urlencode({"channel": channel, "lastEventId": last})
                        raw = await RawStream.open(server, f"/sse/?{query}")
                        raws.append(raw)
                        await raw.hello(10)
                    # The up-to-date stream gets one live event, then only
                    # keepalives, over several poll intervals.
                    await run_publisher(env, [channel], 1, "storm", "live", 0)
                    await read_events(up_to_date, current, 1, timeout=15)
                    watch_until = time.monotonic() + 4.0
                    while time.monotonic() < watch_until:
                        try:
                            sse = await up_to_date.next_event(watch_until - time.monotonic())
                        except TimeoutError:
                            break
                        assert not current.add_sse(sse), sse
                        assert sse.event != "stream-closed", sse.data
                    # Now the replaying clients read on: every event, once, in order.
                    for raw, tracker, start in zip(raws, resuming, starts, strict=True):
                        await read_raw(raw, tracker, history + 1 - start, timeout=90)
                    assert not current.controls, current.controls
        finally:
            for raw in raws:
                raw.close()

        # A restart: every client resumes from its last id at once, and the
        # poll of a hub that has not seen the channel yet overflows nobody.
        server.restart()
        trackers = [*resuming, current]
        async with httpx.AsyncClient(timeout=30.0) as client, AsyncExitStack() as stack:
            streams = []
            for tracker in trackers:
                assert tracker.last_id is not None
                headers = {"Last-Event-ID": tracker.last_id}
                streams.append(
                    await stack.enter_async_context(
                        open_stream(client, sse_url(server, [channel]), headers=headers)
                    )
                )
            await run_publisher(env, [channel], 30, "storm", "after", 0)
            await asyncio.gather(
                *(read_events(s, t, 30, timeout=30) for s, t in zip(streams, trackers, strict=True))
            )

            async def still_open() -> bool:
                return all(not s.response.is_closed for s in streams)

            await wait_until(still_open, 5)
        log = server.output()

    expected = [("old", n) for n in range(history)] + [("live", 0)]
    expected += [("after", n) for n in range(30)]
    for tracker, start in zip(resuming, starts, strict=True):
        assert tracker.got[channel] == expected[start:]
        assert not tracker.controls, tracker.controls
    assert current.got[channel] == expected[history:]
    assert not current.controls, current.controls
    assert "overflow" not in json.dumps([t.controls for t in trackers])
    assert "Traceback" not in log, log[-3000:]
