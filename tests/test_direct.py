"""Direct writes: the hub writes a parked live stream's events itself.

In process, with a ``send`` these tests control: one that suspends (the
server's flow control) to show that nothing overtakes a send in flight, and
one that fails. The same path under real uvicorn and daphne processes is
exercised by every server test (tests/test_server.py, tests/faults/)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Any

import pytest
from django.test import override_settings

from django_sse import asend_event, direct
from django_sse.asgi import _stream
from django_sse.hub import get_hub
from django_sse.ids import decode_position
from django_sse.stream import event_stream
from tests.sse_client import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_db_threads")]


class Client:
    """A stream's ``send``: records bodies; ``hold()`` makes the next sends
    wait until ``release()``, as a server's does while the client reads slowly."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.held: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def send(self, message: Any) -> None:
        if self.fail is not None:
            raise self.fail
        if self.held is not None:
            await self.held.wait()
        self.bodies.append(message.get("body", b""))

    def hold(self) -> None:
        self.held = asyncio.Event()

    def release(self) -> None:
        assert self.held is not None
        self.held.set()
        self.held = None

    def text(self) -> str:
        return b"".join(self.bodies).decode()

    def numbers(self) -> list[int]:
        data = [json.loads(line[len("data: ") :]) for line in self.lines("data: ")]
        return [d["n"] for d in data if "n" in d]

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.text().split("\n") if line.startswith(prefix)]


async def open_stream(
    channel: str | tuple[str, ...], client: Client, connection: str | None = None
) -> tuple[asyncio.Task[None], direct.DirectWriter]:
    never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def receive() -> Any:
        return await never

    writer = direct.DirectWriter(client.send)
    channels = (channel,) if isinstance(channel, str) else channel
    chunks = event_stream(channels, door="asgi", direct=writer, connection=connection)
    task = asyncio.ensure_future(_stream(chunks, receive, client.send, writer))
    await wait_until(lambda: writer.state is not None and writer.state.sub.parked(), 10.0)
    return task, writer


async def close(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_parked_stream_is_written_by_the_hub_with_ids_in_order() -> None:
    client = Client()
    task, writer = await open_stream("a", client)
    try:
        assert writer.state is not None
        sub = writer.state.sub
        for n in range(5):
            await asend_event("a", "tick", {"n": n})
            # Written during the publish: the stream's task was not woken.
            assert client.numbers() == list(range(n + 1))
            assert sub.parked()
        ids = client.lines("id: ")
        assert len(ids) == 5 and len(set(ids)) == 5
        assert writer.state.last_id is not None
        assert ids[-1] == "id: " + writer.state.last_id.decode()
    finally:
        await close(task)


async def test_events_wait_behind_a_send_in_flight_and_keep_their_order() -> None:
    client = Client()
    task, writer = await open_stream("a", client)
    try:
        client.hold()
        await asend_event("a", "tick", {"n": 0})
        assert writer.inflight is not None  # the send is waiting for the client
        for n in range(1, 6):
            await asend_event("a", "tick", {"n": n})
        await asyncio.sleep(0.05)
        assert client.numbers() == []
        client.release()
        await wait_until(lambda: len(client.numbers()) == 6, 10.0)
        assert client.numbers() == list(range(6))
        state = writer.state
        assert state is not None
        await wait_until(lambda: writer.inflight is None and state.sub.parked(), 10.0)
        await asend_event("a", "tick", {"n": 6})
        assert client.numbers() == list(range(7))
    finally:
        await close(task)


@override_settings(SSE_QUEUE_SIZE=10)
async def test_a_stream_whose_send_stays_blocked_overflows_and_closes() -> None:
    client = Client()
    task, writer = await open_stream("a", client)
    try:
        assert writer.state is not None
        sub = writer.state.sub
        client.hold()
        sent = 0
        while sub.close_reason is None and sent < 100:
            await asend_event("a", "tick", {"n": sent})
            sent += 1
        assert sub.close_reason == "overflow"
        client.release()
        await asyncio.wait_for(task, 5)
        got = client.numbers()
        # What it wrote is a prefix, in order; the rest is the reconnect's.
        assert got == list(range(len(got))) and 0 < len(got) < sent
        assert '"reason":"overflow"' in client.text()
    finally:
        await close(task)


async def test_a_failing_send_ends_the_stream_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client()
    task, writer = await open_stream("a", client)
    client.fail = RuntimeError("the server refused the body")
    with caplog.at_level(logging.ERROR, "django_sse"):
        await asend_event("a", "tick", {"n": 0})
        await asyncio.wait_for(task, 5)
    assert writer.error is client.fail
    assert get_hub().subscribers("a") == 0
    assert "Event stream failed" in caplog.text


async def test_only_servers_own_sends_are_driven_from_the_hub() -> None:
    class Cycle:
        async def send(self, message: Any) -> None:
            pass

    assert not direct.supports(Cycle().send)
    assert not direct.supports(functools.partial(Cycle().send))
    Cycle.__module__ = "uvicorn.protocols.http.httptools_impl"
    assert direct.supports(Cycle().send)

    class Server:
        async def handle_reply(self, protocol: Any, message: Any) -> None:
            pass

    Server.__module__ = "daphne.server"
    assert direct.supports(functools.partial(Server().handle_reply, object()))

    async def wrapped(message: Any) -> None:
        pass

    assert not direct.supports(wrapped)


async def _one_chunk() -> Any:
    yield b"x"


async def test_a_client_leaving_as_the_stream_ends_does_not_fail_the_request() -> None:
    # The client's going and the last send finish in the same turn of the
    # loop, the going first: its cancel must not land in the cleanup.
    loop = asyncio.get_running_loop()
    disconnect: asyncio.Future[Any] = loop.create_future()
    last: asyncio.Future[None] = loop.create_future()
    at_last = asyncio.Event()

    async def receive() -> Any:
        return await disconnect

    async def send(message: Any) -> None:
        if not message.get("more_body"):
            at_last.set()
            await last

    task = asyncio.ensure_future(_stream(_one_chunk(), receive, send))
    await asyncio.wait_for(at_last.wait(), 5)
    disconnect.set_result({"type": "http.disconnect"})
    last.set_result(None)
    await asyncio.wait((task,), timeout=5)
    assert task.done() and not task.cancelled()
    assert task.exception() is None


async def test_the_servers_cancel_goes_on_up_when_the_client_left_too() -> None:
    # The client leaves and, before the stream's task runs again, the server
    # cancels it (stopping): the stream's end is quiet, the server's cancel is not.
    loop = asyncio.get_running_loop()
    disconnect: asyncio.Future[Any] = loop.create_future()
    parked: asyncio.Future[None] = loop.create_future()
    reached = asyncio.Event()

    async def receive() -> Any:
        return await disconnect

    async def send(message: Any) -> None:
        pass

    async def chunks() -> Any:
        yield b"x"
        reached.set()
        await parked

    task = asyncio.ensure_future(_stream(chunks(), receive, send))
    await asyncio.wait_for(reached.wait(), 5)
    # Turn 1: the receive ends; turn 2: the client's going cancels the
    # stream (client_left) and then the server does.
    disconnect.set_result({"type": "http.disconnect"})
    loop.call_soon(loop.call_soon, task.cancel)
    await asyncio.wait((task,), timeout=5)
    assert task.cancelled()


async def test_a_direct_send_in_flight_when_the_client_leaves_ends_with_the_request() -> None:
    client = Client()
    loop = asyncio.get_running_loop()
    disconnect: asyncio.Future[Any] = loop.create_future()

    async def receive() -> Any:
        return await disconnect

    writer = direct.DirectWriter(client.send)
    chunks = event_stream(("a",), door="asgi", direct=writer)
    task = asyncio.ensure_future(_stream(chunks, receive, client.send, writer))
    await wait_until(lambda: writer.state is not None and writer.state.sub.parked(), 10.0)
    client.hold()
    await asend_event("a", "tick", {"n": 0})
    inflight = writer.inflight
    assert inflight is not None
    disconnect.set_result({"type": "http.disconnect"})
    await asyncio.wait_for(task, 5)
    # Nothing of the request goes on writing once it returned to the server.
    assert inflight.done()
    assert get_hub().subscribers("a") == 0


@pytest.mark.parametrize("fault", [RuntimeError("refused"), asyncio.CancelledError()])
async def test_a_send_failing_at_once_ends_its_stream_only(fault: BaseException) -> None:
    # Raised in the hub's delivery loop: the publisher and the channel's other
    # streams must not see it.
    bad, good = Client(), Client()
    bad_task, bad_writer = await open_stream("a", bad)
    good_task, _ = await open_stream("a", good)
    try:
        bad.fail = fault  # type: ignore[assignment]
        await asend_event("a", "tick", {"n": 0})
        assert good.numbers() == [0]
        await asyncio.wait((bad_task,), timeout=5)
        assert bad_task.done() and not bad_task.cancelled()
        assert bad_writer.error is fault
        await asend_event("a", "tick", {"n": 1})
        assert good.numbers() == [0, 1]
        assert get_hub().subscribers("a") == 1
    finally:
        await close(bad_task)
        await close(good_task)


async def test_a_send_in_flight_cancelled_by_another_ends_the_stream() -> None:
    # Its bytes may not have been written: the stream must not go on past them.
    client = Client()
    task, writer = await open_stream("a", client)
    try:
        client.hold()
        await asend_event("a", "tick", {"n": 0})
        inflight = writer.inflight
        assert inflight is not None
        inflight.cancel()
        await asyncio.wait((task,), timeout=5)
        assert task.done() and not task.cancelled()
        assert isinstance(writer.error, asyncio.CancelledError)
        assert get_hub().subscribers("a") == 0
    finally:
        await close(task)


def blocks(client: Client) -> list[tuple[str, str, Any]]:
    """(id, event, data) of each event the client got, in order."""
    out = []
    for block in client.text().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "event" in fields:
            out.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
    return out


async def test_ephemeral_and_stored_events_keep_their_order_behind_a_send_in_flight() -> None:
    client = Client()
    task, writer = await open_stream(("a", "typing:r"), client)
    try:
        client.hold()
        await asend_event("a", "tick", {"n": 0})
        assert writer.inflight is not None
        await asend_event("typing:r", "typing", {"n": 1})
        await asend_event("a", "tick", {"n": 2})
        await asend_event("typing:r", "typing", {"n": 3})
        client.release()
        await wait_until(lambda: len(client.numbers()) == 4, 10.0)
        got = blocks(client)
        assert [data["n"] for _, _, data in got] == [0, 1, 2, 3]
        # An ephemeral event repeats the position written before it.
        assert got[1][0] == got[0][0] and got[3][0] == got[2][0] != got[0][0]
    finally:
        await close(task)


async def test_the_shared_frame_is_only_for_streams_on_one_stored_channel() -> None:
    one, two, mixed = Client(), Client(), Client()
    tasks = [
        (await open_stream("a", one))[0],
        (await open_stream(("a", "b"), two))[0],
        (await open_stream(("a", "typing:r"), mixed))[0],
    ]
    try:
        await asend_event("b", "tick", {"n": 0})
        await asend_event("a", "tick", {"n": 1})
        (id_one, _, _), (id_mixed, _, _) = blocks(one)[-1], blocks(mixed)[-1]
        id_two = blocks(two)[-1][0]
        # One stored channel each: the same position, the same id.
        assert id_one == id_mixed
        # Two: its own id, naming both positions.
        assert id_two != id_one
        positions = decode_position(id_two, ("a", "b"))
        assert positions is not None
        assert decode_position(id_one, ("a",)) == {"a": positions["a"]}
        assert positions["b"] > 0
    finally:
        for task in tasks:
            await close(task)


async def test_the_excluded_stream_writes_nothing_and_its_next_id_covers_the_event() -> None:
    from django_sse.exclude import excluding_key, stream_key

    mine, other = Client(), Client()
    mine_task, mine_writer = await open_stream("a", mine, connection="c" * 22)
    other_task, _ = await open_stream("a", other, connection="d" * 22)
    try:
        with excluding_key(stream_key(None, "c" * 22)):
            await asend_event("a", "tick", {"n": 0})
        await asend_event("a", "tick", {"n": 1})
        assert other.numbers() == [0, 1]
        assert mine.numbers() == [1]
        # The same id as the stream that got both: it resumes after both.
        assert blocks(mine)[-1][0] == blocks(other)[-1][0]
        assert mine_writer.state is not None and mine_writer.state.sub.parked()
    finally:
        await close(mine_task)
        await close(other_task)


async def test_an_event_after_a_hole_waits_for_the_stream_to_read_the_store() -> None:
    # Dispatched past a hole: the hub must not write it; the stream's task
    # reads the hole (here pruned: a reset) and then writes it.
    from django_sse.events import Event, encode_body, new_event_id

    client = Client()
    task, writer = await open_stream("a", client)
    try:
        await asend_event("a", "tick", {"n": 0})
        state = writer.state
        assert state is not None and state.cursor is not None
        position = state.cursor.positions["a"]
        payload = json.dumps({"n": 1})
        body = encode_body("tick", payload)
        get_hub().dispatch(Event("a", "tick", new_event_id(), body, position + 5, payload))
        assert client.numbers() == [0]  # not written by the hub
        await wait_until(lambda: client.numbers() == [0, 1], 10.0)
        names = [name for _, name, _ in blocks(client)]
        assert names[-2:] == ["stream-reset", "tick"]
        assert state.cursor.positions["a"] == position + 5
    finally:
        await close(task)


def closing(client: Client) -> dict[str, Any]:
    names = blocks(client)
    assert names and names[-1][1] == "stream-closed", names
    data: dict[str, Any] = names[-1][2]
    return data


async def test_a_revoked_stream_gets_nothing_queued_behind_a_send_in_flight() -> None:
    client = Client()
    task, writer = await open_stream("a", client)
    try:
        state = writer.state
        assert state is not None
        client.hold()
        await asend_event("a", "tick", {"n": 0})  # in flight
        await asend_event("a", "tick", {"n": 1})  # queued behind it
        state.sub.close("revoked")
        await asend_event("a", "tick", {"n": 2})  # after: never
        client.release()
        await asyncio.wait_for(task, 5)
        # What was handed to the server before the revocation, then the end.
        assert client.numbers() == [0]
        assert closing(client)["reason"] == "revoked"
    finally:
        await close(task)


async def test_shutdown_writes_the_closing_event_after_a_send_in_flight() -> None:
    client = Client()
    task, writer = await open_stream("a", client)
    try:
        client.hold()
        await asend_event("a", "tick", {"n": 0})
        assert writer.inflight is not None
        await asend_event("a", "tick", {"n": 1})
        stopping = asyncio.ensure_future(get_hub().stop(grace=5))
        await asyncio.sleep(0)
        client.release()
        await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(task, 5)
        assert client.numbers() == [0, 1]
        data = closing(client)
        assert data["reason"] == "shutdown" and data["reconnect"] is True
        # The closing id is the position after both: the reconnect repeats none.
        assert blocks(client)[-1][0] == blocks(client)[-2][0]
    finally:
        await close(task)


async def test_hubs_of_two_threads_share_an_events_frame_correctly() -> None:
    # One Event object reaches the hub of each loop (in-memory layer): each
    # thread's single-channel stream must write its own correct position.
    import threading

    ready = threading.Event()
    stops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    other = Client()
    failure: list[BaseException] = []

    def stop() -> None:
        for loop, event in stops:
            loop.call_soon_threadsafe(event.set)

    def run() -> None:
        async def main() -> None:
            task, _ = await open_stream("a", other)
            stopped = asyncio.Event()
            stops.append((asyncio.get_running_loop(), stopped))
            ready.set()
            await stopped.wait()
            await close(task)
            await get_hub().stop(grace=1)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    mine = Client()
    task, _ = await open_stream("a", mine)
    try:
        await asyncio.get_running_loop().run_in_executor(None, ready.wait, 10)
        assert not failure, failure
        for n in range(20):
            await asend_event("a", "tick", {"n": n})
        await wait_until(lambda: len(other.numbers()) == 20, 10.0)
        assert mine.numbers() == other.numbers() == list(range(20))
        assert [i for i, _, _ in blocks(mine)] == [i for i, _, _ in blocks(other)]
        positions = [decode_position(i, ("a",)) for i, _, _ in blocks(mine)]
        seqs = [p["a"] for p in positions if p is not None]
        assert seqs == list(range(seqs[0], seqs[0] + 20))
    finally:
        stop()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
        await close(task)
    assert not failure, failure
