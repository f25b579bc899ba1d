"""Resume, replay, gap filling and catch-up, through the view in-process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from django_sse import acurrent_position, asend_event
from django_sse.store import get_store
from tests.asgi_client import asgi_stream
from tests.testapp.state import COUNTERS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


def data(events: list[dict[str, Any]]) -> list[Any]:
    """The payloads of the ``e`` events: JSON decoded, or the verbatim text."""
    out = []
    for e in events:
        if e["event"] == "e":
            try:
                out.append(json.loads(e["data"]))
            except ValueError:
                out.append(e["data"])
    return out


async def test_resume_replays_exactly_what_was_missed() -> None:
    async with asgi_stream("channel=news:r") as first:
        for i in range(3):
            await asend_event("news:r", "e", i)
        events = await first.wait_events(3)
    resume_from = events[0]["id"]
    assert data(events) == [0, 1, 2]
    for i in range(3, 5):
        await asend_event("news:r", "e", i)  # nobody listening

    expected: list[Any] = [1, 2, 3, 4]
    for n, (headers, query) in enumerate(
        [
            ({"Last-Event-ID": resume_from}, "channel=news:r"),
            ({}, f"channel=news:r&lastEventId={resume_from}"),
        ]
    ):
        async with asgi_stream(query, headers) as again:
            replayed = await again.wait_events(len(expected))
            assert data(replayed) == expected
            await asend_event("news:r", "e", f"live{n}")
            expected.append(f"live{n}")
            got = await again.wait_events(len(expected))
            assert data(got) == expected
            assert len({e["id"] for e in got}) == len(got)
            assert not [e for e in got if e["event"] == "stream-reset"]


async def test_multi_channel_resume_from_one_id() -> None:
    async with asgi_stream("channel=news:m1&channel=news:m2") as first:
        await asend_event("news:m1", "e", "a1")
        await asend_event("news:m2", "e", "b1")
        last = (await first.wait_events(2))[-1]["id"]
    await asend_event("news:m2", "e", "b2")
    await asend_event("news:m1", "e", "a2")
    await asend_event("news:m2", "e", "b3")
    # The order of ?channel= does not matter: positions are kept by name.
    async with asgi_stream("channel=news:m2&channel=news:m1", {"Last-Event-ID": last}) as again:
        assert data(await again.wait_events(3)) == ["b2", "a2", "b3"]


@pytest.mark.parametrize(
    ("last_id", "reason"),
    [
        ("garbage", "unknown last event id"),
        ("x" * 1000, "unknown last event id"),
        ("00000000-1", "unknown last event id"),
    ],
)
async def test_unknown_ids_get_stream_reset_then_live(last_id: str, reason: str) -> None:
    async with asgi_stream("channel=news:u", {"Last-Event-ID": last_id}) as stream:
        [reset] = await stream.wait_events(1)
        assert reset["event"] == "stream-reset"
        assert json.loads(reset["data"]) == {"reason": reason}
        await asend_event("news:u", "e", "live")
        assert data(await stream.wait_events(2)) == ["live"]


async def test_a_position_ahead_of_the_store_or_for_other_channels_resets() -> None:
    await asend_event("news:ahead", "e", 1)
    position = await acurrent_position(["news:ahead"])
    ahead = position[:-1] + "z"  # seq 35 on a channel that has 1
    async with asgi_stream("channel=news:ahead", {"Last-Event-ID": ahead}) as stream:
        assert (await stream.wait_events(1))[0]["event"] == "stream-reset"
    query = "channel=news:ahead&channel=news:other"
    async with asgi_stream(query, {"Last-Event-ID": position}) as stream:
        assert (await stream.wait_events(1))[0]["event"] == "stream-reset"


async def test_expired_history_resets() -> None:
    await asend_event("news:old", "e", 0)
    position = await acurrent_position(["news:old"])
    for i in range(1, 6):
        await asend_event("news:old", "e", i)
    store = get_store()
    assert store is not None
    with override_settings(SSE_HISTORY_MAX_EVENTS=2):
        await sync_to_async(store.prune)()
    async with asgi_stream("channel=news:old", {"Last-Event-ID": position}) as stream:
        [reset] = await stream.wait_events(1)
        assert reset["event"] == "stream-reset"
        assert json.loads(reset["data"]) == {"reason": "history expired"}
    # The reset names the current position: a reconnect with it (the header,
    # beside the page's stale query parameter) is not reset again.
    assert reset["id"] == await acurrent_position(["news:old"])
    await asend_event("news:old", "e", 6)
    query = f"channel=news:old&lastEventId={position}"
    async with asgi_stream(query, {"Last-Event-ID": reset["id"]}) as again:
        assert data(await again.wait_events(1)) == [6]
        assert not [e for e in again.events() if e["event"] == "stream-reset"]


async def test_page_position_resumes_from_render_time() -> None:
    await asend_event("news:page", "e", "before render")
    position = await acurrent_position(["news:page"])
    await asend_event("news:page", "e", "between render and connect")
    async with asgi_stream(f"channel=news:page&lastEventId={position}") as stream:
        assert data(await stream.wait_events(1)) == ["between render and connect"]


async def test_a_hole_in_live_delivery_is_filled_from_the_store() -> None:
    store = get_store()
    assert store is not None
    async with asgi_stream("channel=news:gap") as stream:
        await asend_event("news:gap", "e", 1)
        # Stored but never published, as when a layer message is lost.
        await sync_to_async(store.append)("news:gap", "e", "2")
        await asend_event("news:gap", "e", 3)
        got = await stream.wait_events(3)
    assert [e["data"] for e in got] == ["1", "2", "3"]
    assert len({e["id"] for e in got}) == 3


@override_settings(SSE_HISTORY_POLL=0.05)
async def test_stored_but_unpublished_events_arrive_by_catch_up() -> None:
    store = get_store()
    assert store is not None
    async with asgi_stream("channel=news:lost&channel=news:other2") as stream:
        for i in range(3):
            await sync_to_async(store.append)("news:lost", "e", json.dumps(i))
        assert data(await stream.wait_events(3)) == [0, 1, 2]


async def test_ephemeral_events_do_not_move_the_position() -> None:
    async with asgi_stream("channel=news:eph&channel=typing:r1") as stream:
        await asend_event("news:eph", "e", "stored")
        await asend_event("typing:r1", "typing", {"who": "bob"})
        stored, typing = await stream.wait_events(2)
    assert typing["event"] == "typing" and typing["id"] == stored["id"]


async def test_snapshot_is_sent_first_to_new_streams_only() -> None:
    COUNTERS["c1"] = 7
    async with asgi_stream("channel=counter:c1") as stream:
        [snapshot] = await stream.wait_events(1)
        await asend_event("counter:c1", "e", "after")
        assert data(await stream.wait_events(2)) == ["after"]
    assert snapshot["event"] == "snapshot"
    assert json.loads(snapshot["data"]) == {
        "channel": "counter:c1",
        "data": {"count": 7, "user": ""},
    }
    resume = (await stream.wait_events(2))[-1]["id"]
    async with asgi_stream("channel=counter:c1", {"Last-Event-ID": resume}) as again:
        await asend_event("counter:c1", "e", "next")
        assert [e["event"] for e in await again.wait_events(1)] == ["e"]


@override_settings(SSE_STORE=None)
async def test_without_history_every_resume_resets() -> None:
    async with asgi_stream("channel=news:nh", {"Last-Event-ID": "anything"}) as stream:
        [reset] = await stream.wait_events(1)
    assert json.loads(reset["data"]) == {"reason": "history unavailable"}


async def test_a_hole_pruned_before_it_is_read_resets_with_a_resumable_id() -> None:
    from django_sse.models import StoredEvent

    store = get_store()
    assert store is not None
    async with asgi_stream("channel=news:pruned") as stream:
        await asend_event("news:pruned", "e", 1)
        # Stored but never published, and pruned before the stream reads it.
        await sync_to_async(store.append)("news:pruned", "e", "2")
        await sync_to_async(store.append)("news:pruned", "e", "3")
        await StoredEvent.objects.filter(channel="news:pruned", seq=2).adelete()
        await asend_event("news:pruned", "e", 4)
        first, reset, third, fourth = await stream.wait_events(4)
    # Only the missing event is reset: what the store still has after the hole
    # is written, in order.
    assert (first["data"], third["data"], fourth["data"]) == ("1", "3", "4")
    assert reset["event"] == "stream-reset"
    assert json.loads(reset["data"]) == {"reason": "history expired"}
    # The reset names the position after the hole, so resuming from it
    # replays what came after and resets nothing.
    assert reset["id"] and reset["id"] != first["id"]
    await asend_event("news:pruned", "e", 5)
    async with asgi_stream("channel=news:pruned", {"Last-Event-ID": reset["id"]}) as again:
        assert data(await again.wait_events(3)) == [3, 4, 5]
        assert not [e for e in again.events() if e["event"] == "stream-reset"]


async def test_a_replay_resets_at_a_hole_instead_of_skipping_it() -> None:
    from django_sse.ids import single_channel_id
    from django_sse.models import StoredEvent

    for i in range(1, 6):
        await asend_event("news:rhole", "e", i)
    # Pruned in the middle (a skewed clock, a manual delete): 1 is still the oldest.
    await StoredEvent.objects.filter(channel="news:rhole", seq=3).adelete()
    resume = single_channel_id("news:rhole", 0)
    async with asgi_stream("channel=news:rhole", {"Last-Event-ID": resume}) as stream:
        events = await stream.wait_events(5)
    assert [e["event"] for e in events] == ["e", "e", "stream-reset", "e", "e"]
    assert data(events) == [1, 2, 4, 5]
    assert json.loads(events[2]["data"]) == {"reason": "history expired"}
    assert events[2]["id"] == single_channel_id("news:rhole", 3)


async def test_filling_a_hole_checks_every_record() -> None:
    from django_sse.models import StoredEvent

    store = get_store()
    assert store is not None
    async with asgi_stream("channel=news:fhole") as stream:
        await asend_event("news:fhole", "e", 1)
        await stream.wait_events(1)
        # Stored, never published; the second of them is pruned before it is read.
        for n in (2, 3, 4):
            await sync_to_async(store.append)("news:fhole", "e", str(n))
        await StoredEvent.objects.filter(channel="news:fhole", seq=3).adelete()
        await asend_event("news:fhole", "e", 5)
        events = await stream.wait_events(5)
    assert [e["event"] for e in events] == ["e", "e", "stream-reset", "e", "e"]
    assert data(events) == [1, 2, 4, 5]


async def test_a_stream_revoked_while_starting_runs_no_snapshot_and_no_replay() -> None:
    import time

    from django.contrib.auth.models import User

    from django_sse.auth import Identity
    from django_sse.hub import get_hub
    from django_sse.ids import single_channel_id
    from django_sse.stream import event_stream

    user = await sync_to_async(User.objects.create_user)("revoked-while-starting")
    for i in range(3):
        await asend_event("news:rvs", "e", {"private": i})
    since = time.monotonic()
    get_hub().revoke(str(user.pk), session="s")  # a logout just before the streams subscribe
    closed = b'event: stream-closed\ndata: {"reason":"revoked","reconnect":false}\n\n'

    async def body(channel: str, last_event_id: str | None = None) -> bytes:
        identity = Identity(user, "session", session_key="s", since=since)
        chunks = event_stream((channel,), identity=identity, last_event_id=last_event_id)
        return b"".join([chunk async for chunk in chunks])

    COUNTERS["rvs"] = 41
    fresh = await body("counter:rvs")  # would send a snapshot
    assert fresh.startswith(b"retry: 3000\n: connected\n") and fresh.endswith(closed)
    assert b"snapshot" not in fresh and b"41" not in fresh
    resumed = await body("news:rvs", single_channel_id("news:rvs", 0))  # would replay
    assert b"private" not in resumed and resumed.endswith(closed)


async def test_first_bytes_go_out_before_the_snapshot_runs() -> None:
    import asyncio
    import threading

    from django_sse import channels
    from django_sse.stream import event_stream

    release = threading.Event()

    def slow_state(user: Any, name: str) -> dict[str, str]:
        # Blocks until the test has the first chunk: the snapshot must not
        # hold back the response head (daphne sends none before it).
        assert release.wait(10)
        return {"state": name}

    channels.register("slowsnap:{name}", channels.PUBLIC, snapshot=slow_state)
    try:
        stream = event_stream(("slowsnap:a",))
        first = await asyncio.wait_for(anext(stream), 5)
        assert first == b"retry: 3000\n: connected\n"
        release.set()
        snapshot = await asyncio.wait_for(anext(stream), 5)
        assert b"event: snapshot" in snapshot and b'"state":"a"' in snapshot
        await asend_event("slowsnap:a", "e", {"n": 1})
        assert b'data: {"n":1}' in await asyncio.wait_for(anext(stream), 5)
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        release.set()
        channels.registry.unregister("slowsnap:{name}")


async def test_an_event_published_after_the_first_bytes_is_written() -> None:
    import asyncio

    from django_sse.stream import event_stream

    stream = event_stream(("news:early",))
    assert await asyncio.wait_for(anext(stream), 5) == b"retry: 3000\n: connected\n"
    # The client has its first bytes (onopen); the stream has not read its
    # position yet. An event published now is already counted in the store's
    # head when the stream reads it, and must still be written.
    await asend_event("news:early", "e", {"n": 1})
    chunk = await asyncio.wait_for(anext(stream), 5)
    assert b'data: {"n":1}' in chunk
    await stream.aclose()  # type: ignore[attr-defined]


async def test_an_event_published_while_the_snapshot_runs_follows_it_once() -> None:
    import asyncio

    from django_sse import channels, send_event
    from django_sse.stream import event_stream

    def state_then_change(user: Any, name: str) -> dict[str, int]:
        # The state already holds the change, whose event is published meanwhile:
        # it is written after the snapshot (idempotent: it carries the value).
        send_event(f"racesnap:{name}", "count", {"count": 8})
        return {"count": 8}

    channels.register("racesnap:{name}", channels.PUBLIC, snapshot=state_then_change)
    try:
        stream = event_stream(("racesnap:a",))
        await asyncio.wait_for(anext(stream), 5)
        body = b""
        while b"event: count" not in body:
            body += await asyncio.wait_for(anext(stream), 5)
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        channels.registry.unregister("racesnap:{name}")
    assert body.index(b"event: snapshot") < body.index(b"event: count")
    assert body.count(b"event: count") == 1
