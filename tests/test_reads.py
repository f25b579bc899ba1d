"""Store reads shared by a hub's streams (django_sse.reads), against the real store."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from django_sse.membership import Group
from django_sse.reads import SharedReads, _Next
from django_sse.store import DatabaseStore

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]

append = sync_to_async(DatabaseStore().append)


async def test_a_request_made_while_a_query_runs_waits_for_the_next_query() -> None:
    started: list[list[str]] = []
    running = asyncio.Event()
    release = asyncio.Event()

    async def run(keys: list[str]) -> list[str]:
        started.append(keys)
        running.set()
        await release.wait()
        return keys

    shared: _Next[str, list[str]] = _Next(run)
    first = asyncio.create_task(shared.get(["a"]))
    await asyncio.wait_for(running.wait(), 5)
    # Asked while the first query runs: both go into one second query.
    second = asyncio.create_task(shared.get(["b"]))
    third = asyncio.create_task(shared.get(["c"]))
    await asyncio.sleep(0)
    assert started == [["a"]]
    release.set()
    assert await first == ["a"]
    assert await second == ["b", "c"] == await third
    assert started == [["a"], ["b", "c"]]


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    release = asyncio.Event()

    async def run(keys: list[str]) -> str:
        await release.wait()
        return "answer"

    shared: _Next[str, str] = _Next(run)
    gone = asyncio.create_task(shared.get(["a"]))
    stays = asyncio.create_task(shared.get(["a"]))
    await asyncio.sleep(0)
    gone.cancel()
    release.set()
    assert await stays == "answer"


async def test_streams_asking_the_same_page_share_one_query() -> None:
    for i in range(3):
        await append("r:a", "e", str(i))
    reads = SharedReads({})
    since = time.monotonic()
    pages = await asyncio.gather(*(reads.read({"r:a": 0}, since=since) for _ in range(50)))
    assert all([r.seq for r in page] == [1, 2, 3] for page in pages)
    # The first asks alone; the 49 that asked while it ran share the next.
    assert reads.queries == 2


async def test_a_kept_page_is_not_reused_when_the_channel_moved_on_since() -> None:
    await append("r:b", "e", "1")
    group = Group()
    reads = SharedReads({"r:b": group})
    early = time.monotonic()
    assert [r.seq for r in await reads.read({"r:b": 0}, since=early)] == [1]
    # A stream subscribed after that query, while nothing more was seen: reused.
    assert [r.seq for r in await reads.read({"r:b": 0}, since=time.monotonic())] == [1]
    assert reads.queries == 1
    # The hub then dispatched seq 2: a later stream must read it from the store.
    await append("r:b", "e", "2")
    group.seen = 2
    assert [r.seq for r in await reads.read({"r:b": 0}, since=time.monotonic())] == [1, 2]
    assert reads.queries == 2


async def test_a_kept_page_is_not_reused_for_a_channel_the_hub_did_not_serve() -> None:
    await append("r:c", "e", "1")
    reads = SharedReads({})
    await reads.read({"r:c": 0}, since=time.monotonic())
    await append("r:c", "e", "2")  # published while nobody here listened
    assert [r.seq for r in await reads.read({"r:c": 0}, since=time.monotonic())] == [1, 2]


async def test_an_empty_page_is_never_reused() -> None:
    reads = SharedReads({"r:d": Group()})
    assert await reads.read({"r:d": 0}, since=time.monotonic()) == []
    await append("r:d", "e", "1")
    # A stream filling a hole must see what was committed before it asked.
    assert [r.seq for r in await reads.read({"r:d": 0}, since=0.0)] == [1]
    assert reads.queries == 2


async def test_a_head_below_a_resuming_position_is_read_again() -> None:
    await append("r:e", "e", "1")
    reads = SharedReads({"r:e": Group()})
    assert await reads.heads(["r:e"], time.monotonic()) == {"r:e": 1}
    await append("r:e", "e", "2")
    # A client that saw seq 2 (through another process) must not look ahead of the store.
    assert await reads.heads(["r:e"], 0.0, {"r:e": 2}) == {"r:e": 2}
    assert reads.queries == 2


async def test_multi_channel_reads_merge_in_store_order_up_to_the_limit() -> None:
    for name in ["x", "y", "x", "y", "x"]:
        await append(f"r:{name}", "e", name)
    reads = SharedReads({})
    records = await reads.read({"r:x": 0, "r:y": 0}, limit=4, since=time.monotonic())
    assert [(r.channel, r.seq) for r in records] == [
        ("r:x", 1),
        ("r:y", 1),
        ("r:x", 2),
        ("r:y", 2),
    ]
