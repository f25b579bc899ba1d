"""Nothing lost, with real servers: history under concurrent publishers on
PostgreSQL, a Redis outage mid-stream, and a client that stops reading.

Every test runs real processes (uvicorn or daphne, ``tests.publisher``,
redis-server, PostgreSQL) and talks to them over sockets. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from httpx_sse import ServerSentEvent

from django_sse.ids import decode_position
from tests.conftest import postgres_env
from tests.servers import ROOT, RedisServer, Server, base_env, running_server
from tests.sse_client import Stream, open_stream, unique, wait_until

pytestmark = [pytest.mark.server, pytest.mark.redis]

CONTROL_EVENTS = ("stream-reset", "stream-closed")


# -- helpers ----------------------------------------------------------------


async def run_publisher(
    env: dict[str, str],
    channels: list[str],
    count: int,
    event: str,
    tag: str,
    pad: int = 0,
    timeout: float = 90.0,
) -> str:
    """Run ``python -m tests.publisher`` in a process of its own; return its output."""
    args = [",".join(channels), str(count), event, tag] + ([str(pad)] if pad else [])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.publisher",
        *args,
        cwd=ROOT,
        env=base_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    text = output.decode(errors="replace")
    assert proc.returncode == 0, f"publisher {tag} exited with {proc.returncode}:\n{text[-3000:]}"
    return text


@dataclass
class Tracker:
    """What one client saw on its stored channels, checked event by event.

    Every data event's ``id:`` is the stream position on all its channels: it
    must advance exactly one channel (the one named in the payload) by exactly
    one, so a gap, a repeat or a reordering fails at the event that shows it."""

    channels: tuple[str, ...]  # sorted, as the ids encode them
    positions: dict[str, int] = field(default_factory=dict)
    got: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    controls: list[tuple[str, str]] = field(default_factory=list)
    last_id: str | None = None

    def __post_init__(self) -> None:
        self.positions = dict.fromkeys(self.channels, 0)
        self.got = {c: [] for c in self.channels}

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.got.values())

    def add(self, event_name: str, event_id: str, data: str) -> None:
        if event_name in CONTROL_EVENTS:
            self.controls.append((event_name, data))
            return
        payload = json.loads(data)
        channel = payload["channel"]
        new = decode_position(event_id, self.channels)
        assert new is not None, f"id {event_id!r} is not a position on {self.channels}"
        moved = {
            c: new[c] - self.positions[c] for c in self.channels if new[c] != self.positions[c]
        }
        assert moved == {channel: 1}, (
            f"event {payload['tag']}#{payload['n']} on {channel}: id {event_id} moves the "
            f"position by {moved} from {self.positions} (a gap, repeat or reorder)"
        )
        self.positions = new
        self.got[channel].append((payload["tag"], payload["n"]))
        self.last_id = event_id

    def add_sse(self, sse: ServerSentEvent) -> bool:
        """Track ``sse``; return whether it was an event (not a control event).

        The server sends no block without data (its hello and keepalives are
        lines with no blank line of their own); an empty "message" would be
        one, and is not counted."""
        if sse.data == "" and sse.event not in CONTROL_EVENTS:
            return False
        self.add(sse.event, sse.id, sse.data)
        return sse.event not in CONTROL_EVENTS


async def read_events(stream: Stream, tracker: Tracker, count: int, timeout: float) -> None:
    """Track the next ``count`` events of ``stream`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {seen} of {count} events; so far {tracker.got}")
        try:
            sse = await stream.next_event(remaining)
        except TimeoutError:
            raise TimeoutError(
                f"got {seen} of {count} events in {timeout}s; at {tracker.positions}"
            ) from None
        except StopAsyncIteration:
            raise AssertionError(
                f"the server ended the stream after {seen} of {count} events; "
                f"at {tracker.positions}, control events {tracker.controls}"
            ) from None
        if tracker.add_sse(sse):
            seen += 1


def sse_url(server: Server, channels: list[str], **params: str) -> str:
    query = urlencode([("channel", c) for c in channels] + list(params.items()))
    return f"{server.url}/sse/?{query}"


# -- 1. PostgreSQL, concurrent publishers, a client that keeps reconnecting --


def stored_rows(dbname: str, channels: list[str]) -> dict[str, list[tuple[int, str, int]]]:
    """``(seq, tag, n)`` of every stored event per channel, in sequence order."""
    import psycopg

    rows: dict[str, list[tuple[int, str, int]]] = {c: [] for c in channels}
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}"
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        for channel, seq, payload in conn.execute(
            "SELECT channel, seq, payload FROM django_sse_storedevent "
            "WHERE channel = ANY(%s) ORDER BY channel, seq",
            [channels],
        ):
            data = json.loads(payload)
            assert data["channel"] == channel
            rows[channel].append((seq, data["tag"], data["n"]))
    return rows


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_postgres_concurrent_publishers_and_a_reconnecting_client_lose_nothing(
    postgres_db: str, redis_url: str
) -> None:
    publishers, per_publisher = 5, 150
    channels = sorted([f"news:{unique('pga')}", f"news:{unique('pgb')}"])
    tags = [f"p{i}" for i in range(publishers)]
    expected_total = publishers * per_publisher * len(channels)
    env = {**postgres_env(postgres_db), "SSE_TEST_LAYER": "redis", "REDIS_URL": redis_url}
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tracker = Tracker(tuple(channels))
    stats = {"connections": 0, "header": 0, "query": 0, "during_publishing": 0, "timeouts": 0}

    async def connection(client: httpx.AsyncClient, server: Server, resume: bool) -> None:
        """One connection: resume if asked, read a few events, hang up."""
        url, headers = sse_url(server, channels), {}
        if resume:
            # Alternate the header and the query parameter (EventSource after a
            # page reload cannot set the header).
            assert tracker.last_id is not None
            if stats["connections"] % 2:
                headers = {"Last-Event-ID": tracker.last_id}
                stats["header"] += 1
            else:
                url = sse_url(server, channels, lastEventId=tracker.last_id)
                stats["query"] += 1
        async with open_stream(client, url, headers=headers) as stream:
            assert stream.response.status_code == 200
            stats["connections"] += 1
            stats["during_publishing"] += not all(t.done() for t in tasks)
            if not resume:
                subscribed.set()
            try:
                # The first read waits out the publishers' start-up.
                timeout = 3.0 if resume else 30.0
                await read_events(stream, tracker, rng.randint(1, 25), timeout=timeout)
            except TimeoutError:
                # Nothing published yet, or everything read: hang up all the same
                # (the cancelled read ends this connection's iterator anyway).
                stats["timeouts"] += 1

    subscribed = asyncio.Event()
    tasks: list[asyncio.Task[str]] = []
    with running_server("uvicorn", **env, SSE_KEEPALIVE="1") as server:
        async with httpx.AsyncClient(timeout=30.0) as client:
            # The first connection is in place before anything is published, so the
            # client's history starts at sequence 1 on both channels.
            reader = asyncio.create_task(connection(client, server, resume=False))
            await asyncio.wait_for(subscribed.wait(), 15)
            tasks += [
                asyncio.create_task(run_publisher(env, channels, per_publisher, "hist", tag))
                for tag in tags
            ]
            started = time.monotonic()
            try:
                await reader
                deadline = started + 150
                idle = 0  # connections in a row that brought nothing, publishers done
                while not (
                    all(t.done() for t in tasks)
                    and (tracker.total >= expected_total or any(t.exception() for t in tasks))
                ):
                    assert time.monotonic() < deadline and idle < 3, (
                        f"seed {seed}: got {tracker.total} of {expected_total}; {stats}"
                    )
                    done, before = all(t.done() for t in tasks), tracker.total
                    await connection(client, server, resume=True)
                    idle = idle + 1 if done and tracker.total == before else 0
            finally:
                reader.cancel()
                for task in tasks:
                    task.cancel()
                outputs = await asyncio.gather(*tasks, return_exceptions=True)
            elapsed = time.monotonic() - started
        server_log = server.output()
    for output in outputs:
        if isinstance(output, BaseException):
            raise output

    print(f"\nseed {seed}: {expected_total} events, {stats}, {elapsed:.1f}s")
    assert not tracker.controls, f"seed {seed}: control events {tracker.controls}"
    assert "Traceback" not in server_log, server_log[-3000:]
    rows = stored_rows(postgres_db, channels)
    published = {(tag, n) for tag in tags for n in range(per_publisher)}
    for channel in channels:
        stored = rows[channel]
        # The store numbered every event of the channel once, without gaps,
        assert [seq for seq, _, _ in stored] == list(range(1, len(stored) + 1))
        assert {(tag, n) for _, tag, n in stored} == published
        assert len(stored) == len(published)
        # keeping each publisher's own order.
        for tag in tags:
            assert [n for _, t, n in stored if t == tag] == list(range(per_publisher))
        # The publishers really ran at once: their events interleave in the store.
        tags_in_order = [tag for _, tag, _ in stored]
        switches = sum(a != b for a, b in itertools.pairwise(tags_in_order))
        assert switches >= publishers, f"publishers did not overlap on {channel}"
        # The client saw exactly the stored sequence across all its connections.
        assert tracker.got[channel] == [(tag, n) for _, tag, n in stored], f"seed {seed}"
    assert stats["connections"] >= 20, stats
    assert stats["header"] and stats["query"], stats


# -- 2. Redis killed and restarted while streams stay open ------------------


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
@pytest.mark.timeout(180)
async def test_redis_outage_is_filled_from_the_store_on_the_original_connections(
    kind: str, private_redis_server: RedisServer, server_db: str
) -> None:
    url = private_redis_server.url
    channel = f"news:{unique('outage')}"
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": url,
        "SSE_KEEPALIVE": "0.5",
        "SSE_HISTORY_POLL": "0.5",
    }
    batches = [("before", 5), ("down1", 10), ("down2", 10), ("after", 5)]
    trackers = [Tracker((channel,)) for _ in range(3)]

    async def everyone_reads(count: int, timeout: float = 20.0) -> None:
        await asyncio.gather(
            *(read_events(s, t, count, timeout) for s, t in zip(streams, trackers, strict=True))
        )

    with running_server(kind, **env) as server:
        async with httpx.AsyncClient(timeout=30.0) as client, AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(open_stream(client, sse_url(server, [channel])))
                for _ in trackers
            ]
            await run_publisher(env, [channel], 5, "outage", "before")
            await everyone_reads(5)

            private_redis_server.kill()
            # With history on, send_event stores the event and only logs that the
            # layer failed: the publisher exits 0.
            output = await run_publisher(env, [channel], 10, "outage", "down1")
            assert "streams will catch up from the store" in output, output[-2000:]
            # Redis is still down: only the hub's poll of the store can bring these.
            await everyone_reads(10)

            # Published while down, then Redis comes back at once: delivered by
            # whichever path runs first, never twice, never out of order.
            await run_publisher(env, [channel], 10, "outage", "down2")
            private_redis_server.start()
            await run_publisher(env, [channel], 5, "outage", "after")
            await everyone_reads(15)
            assert all(s.response.is_closed is False for s in streams)
        assert server.proc.poll() is None, server.output()[-3000:]

    expected = [(tag, n) for tag, count in batches for n in range(count)]
    for tracker in trackers:
        assert tracker.got[channel] == expected
        assert tracker.positions == {channel: len(expected)}
        assert not tracker.controls, tracker.controls


# -- 3. A client that stops reading ------------------------------------------


class RawStream:
    """An SSE request over a plain socket, read only when the test says so.

    The socket's receive buffer is kept small, so a client that stops reading
    quickly pushes back on the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.chunked = False
        self.buffer = b""
        self.ended = False

    @classmethod
    async def open(cls, server: Server, path: str, rcvbuf: int = 8192) -> RawStream:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", server.port)), 10)
        reader, writer = await asyncio.open_connection(sock=sock)
        self = cls(reader, writer)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status, *headers = head.decode("latin-1").split("\r\n")
        assert status.split()[1] == "200", head
        self.chunked = any(
            h.lower().startswith("transfer-encoding:") and "chunked" in h.lower() for h in headers
        )
        return self

    async def _more(self) -> None:
        if self.chunked:
            line = await self.reader.readline()
            if not line.endswith(b"\r\n"):
                raise EOFError("connection closed inside the chunked body")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                self.ended = True
                return
            self.buffer += (await self.reader.readexactly(size + 2))[:-2]
        else:
            data = await self.reader.read(65536)
            if not data:
                self.ended = True
            self.buffer += data

    async def hello(self, timeout: float) -> bytes:
        """The stream's first bytes: ``retry:`` and a comment, no block of their own."""
        deadline = time.monotonic() + timeout
        while b": connected\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if self.ended or remaining <= 0:
                raise TimeoutError(f"no hello within {timeout}s: {self.buffer[:200]!r}")
            await asyncio.wait_for(self._more(), remaining)
        hello, marker, self.buffer = self.buffer.partition(b": connected\n")
        return hello + marker

    async def next_block(self, timeout: float) -> bytes | None:
        """The next ``\\n\\n``-terminated block, or ``None`` at the end of the body."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.buffer:
            if self.ended:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete event within {timeout}s")
            await asyncio.wait_for(self._more(), remaining)
        block, _, self.buffer = self.buffer.partition(b"\n\n")
        return block

    def close(self) -> None:
        self.writer.close()


def parse_block(block: bytes) -> dict[str, Any] | None:
    """``{"id", "event", "data", "retry"}`` of one block, or ``None`` for comments."""
    fields: dict[str, Any] = {"id": None, "event": None, "data": [], "retry": None}
    for line in block.decode().split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            fields["data"].append(value)
        elif name in ("id", "event", "retry"):
            fields[name] = value
    if not fields["data"] and fields["event"] is None and fields["retry"] is None:
        return None
    fields["data"] = "\n".join(fields["data"])
    fields["event"] = fields["event"] or "message"
    return fields


async def hub_stats(client: httpx.AsyncClient, server: Server) -> dict[str, int]:
    response = await client.get(f"{server.url}/test/stats/")
    response.raise_for_status()
    return dict(response.json())


# uvicorn only: daphne (Twisted) accepts every write into an unbounded transport
# buffer, so its stream never blocks on a client that stops reading, its queue
# never fills and no overflow happens there (DESIGN.md section 3). Run against
# daphne, this scenario delivers all 500 events on the first connection.
@pytest.mark.timeout(180)
async def test_a_client_that_stops_reading_is_closed_then_resumes_without_loss(
    redis_url: str, server_db: str
) -> None:
    count, pad = 500, 16000  # 500 x 16 KB: far more than the socket buffers hold
    channel = f"news:{unique('slow')}"
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": redis_url,
        "SSE_KEEPALIVE": "0.5",
        "SSE_QUEUE_SIZE": "20",
    }
    tracker = Tracker((channel,))
    with running_server("uvicorn", **env) as server:
        async with httpx.AsyncClient(timeout=30.0) as client:
            raw = await RawStream.open(server, f"/sse/?{urlencode({'channel': channel})}")
            try:
                hello = await raw.hello(10)
                assert hello.startswith(b"retry: "), hello
                # From here the client reads nothing until every event was offered
                # to its stream.
                before = (await hub_stats(client, server))["delivered"]
                await run_publisher(env, [channel], count, "big", "slow", pad)

                async def all_dispatched() -> bool:
                    return (await hub_stats(client, server))["delivered"] >= before + count

                await wait_until(all_dispatched, timeout=30, interval=0.1)

                # Now read on: what the server had written or queued, then the close.
                blocks: list[dict[str, Any]] = []
                deadline = time.monotonic() + 60
                while True:
                    raw_block = await raw.next_block(max(deadline - time.monotonic(), 0.01))
                    if raw_block is None:
                        break
                    parsed = parse_block(raw_block)
                    if parsed is not None:
                        blocks.append(parsed)
            finally:
                raw.close()

            assert blocks, "the stream wrote nothing"
            closing = blocks[-1]
            assert closing["event"] == "stream-closed", [b["event"] for b in blocks[-3:]]
            assert json.loads(closing["data"]) == {"reason": "overflow", "reconnect": True}
            for block in blocks[:-1]:
                assert block["event"] == "big", block["event"]
                tracker.add(block["event"], block["id"], block["data"])
            first_part = len(tracker.got[channel])
            assert 0 < first_part < count, first_part
            # The closing event repeats the last id, so resuming from it is exact.
            assert closing["id"] == tracker.last_id

            assert tracker.last_id is not None
            async with open_stream(
                client, sse_url(server, [channel]), headers={"Last-Event-ID": tracker.last_id}
            ) as stream:
                await read_events(stream, tracker, count - first_part, timeout=60)
        assert server.proc.poll() is None
        log = server.output()
    print(f"\nfirst connection: {first_part} events, then overflow; resumed for the rest")
    assert "Traceback" not in log, log[-3000:]
    assert tracker.got[channel] == [("slow", n) for n in range(count)]
    assert tracker.positions == {channel: count}
    assert not tracker.controls  # the stream-closed above was read raw, not tracked
