"""send_event / asend_event in one process, on the in-memory layer."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from django_sse import asend_event, send_event
from django_sse.hub import Subscription, get_hub
from tests.sse_client import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


async def payloads(sub: Subscription) -> list[object]:
    out = []
    for event in sub.drain():
        data = event.wire.split(b"data: ", 1)[1].split(b"\n")[0]
        out.append(json.loads(data))
    return out


async def test_asend_event_reaches_subscribers_of_that_channel_only() -> None:
    hub = get_hub()
    a = await hub.subscribe(("a",), 10)
    b = await hub.subscribe(("b",), 10)
    both = await hub.subscribe(("a", "b"), 10)
    await asend_event("a", "e", 1)
    await asend_event("b", "e", 2)
    assert await payloads(a) == [1]
    assert await payloads(b) == [2]
    assert await payloads(both) == [1, 2]


async def test_send_event_waits_for_commit() -> None:
    sub = await get_hub().subscribe(("tx",), 10)

    def commit() -> None:
        with transaction.atomic():
            send_event("tx", "e", "in-tx")
            # Not yet: the transaction is open.
            assert len(sub) == 0

    await sync_to_async(commit)()
    await wait_until(lambda: len(sub) == 1)
    assert sub.drain()[0].wire.endswith(b'data: "in-tx"\n\n')


async def test_rollback_sends_nothing_and_nested_blocks_send_once() -> None:
    sub = await get_hub().subscribe(("tx2",), 10)

    def work() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            send_event("tx2", "e", "rolled back")
            raise RuntimeError
        with transaction.atomic():
            with transaction.atomic():
                send_event("tx2", "e", "nested")
            try:
                with transaction.atomic():
                    send_event("tx2", "e", "inner rollback")
                    raise ValueError
            except ValueError:
                pass
        send_event("tx2", "e", "after")

    await sync_to_async(work)()
    await wait_until(lambda: len(sub) >= 2)
    assert await payloads_text(sub) == ["nested", "after"]


async def payloads_text(sub: Subscription) -> list[str]:
    """The str payloads, JSON-decoded (a plain str is sent as JSON)."""
    return [json.loads(e.wire.split(b"data: ", 1)[1].split(b"\n")[0].decode()) for e in sub.drain()]


async def test_bad_input_raises_at_send_event_even_inside_atomic() -> None:
    sub = await get_hub().subscribe(("tx3",), 10)

    def work() -> None:
        with transaction.atomic():
            with pytest.raises(TypeError, match="'tx3'"):
                send_event("tx3", "e", object())
            with pytest.raises(ValueError, match="control character"):
                send_event("tx3", "bad\nname", {})
            send_event("tx3", "e", "good")

    await sync_to_async(work)()
    await wait_until(lambda: len(sub) == 1)
    assert await payloads_text(sub) == ["good"]


async def test_send_event_from_async_code_says_to_use_asend_event() -> None:
    with pytest.raises(RuntimeError, match="asend_event"):
        send_event("a", "e", 1)


async def test_publishing_to_a_channel_nobody_reads_is_fine() -> None:
    event = await asend_event("nobody-listens", "e", {"x": 1})
    assert event.channel == "nobody-listens"
    assert await sync_to_async(send_event)("nobody-listens", "e", 2)
