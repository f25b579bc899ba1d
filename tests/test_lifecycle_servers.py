"""``stream_opened`` and ``stream_closed`` from real servers, with receivers that raise.

The test project's receivers (tests/testapp/lifecycle.py) append a JSON line
per signal to a file, then raise: the streams must carry on, the hub must
serve the next stream, and each stream's two lines must say who, which
channels, which door, why it closed and for how long.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Server, running_server
from tests.sse_client import login, open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server

KINDS = [("uvicorn", "fast", "asgi"), ("daphne", "view", "view")]


@pytest.fixture(params=KINDS, ids=[f"{k}-{d}" for k, d, _ in KINDS])
def audited(request: pytest.FixtureRequest, server_db: str) -> Iterator[tuple[Server, Path, str]]:
    kind, door, label = request.param
    with tempfile.TemporaryDirectory(prefix="lifecycle-") as tmp:
        log = Path(tmp) / "signals.jsonl"
        log.touch()
        with running_server(
            kind,
            SSE_TEST_DB=server_db,
            SSE_TEST_LAYER="memory",
            SSE_TEST_DOOR=door,
            SSE_KEEPALIVE="0.5",
            SSE_TEST_LIFECYCLE_LOG=str(log),
            SSE_TEST_LIFECYCLE_RAISE="1",
        ) as server:
            yield server, log, label


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as c:
        yield c


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line]


async def has_lines(log: Path, count: int) -> None:
    await wait_until(lambda: len(lines(log)) >= count, timeout=15.0)


@pytest.mark.timeout(120)
async def test_raising_receivers_break_no_stream_and_say_why_streams_closed(
    audited: tuple[Server, Path, str], client: httpx.AsyncClient
) -> None:
    server, log, door = audited
    name = unique("auditor")
    await login(client, server.url, name)
    channel = f"news:{unique('life')}"
    url = f"{server.url}/sse/?channel={channel}&channel=members"

    # 1. The receiver of stream_opened raised; the stream carries on.
    async with open_stream(client, url) as stream:
        await has_lines(log, 1)
        await publish(client, server.url, channel, count=2)
        assert len(await stream.collect(2)) == 2
    await has_lines(log, 2)
    opened, closed = lines(log)
    assert opened == {
        "signal": "opened",
        "user": name,
        "channels": [channel, "members"],
        "door": door,
        "reason": None,
        "duration": None,
        "sender": "event_stream",
    }
    assert closed["signal"] == "closed" and closed["reason"] == "client gone"
    assert closed["user"] == name and closed["door"] == door
    assert closed["channels"] == [channel, "members"]
    assert 0 < closed["duration"] < 60

    # 2. The receiver of stream_closed raised too; the hub serves the next
    # stream, which a revocation ends with its own reason.
    async with open_stream(client, url) as stream:
        await publish(client, server.url, channel)
        await stream.collect(1)
        response = await client.get(f"{server.url}/test/revoke/", params={"username": name})
        response.raise_for_status()
        [end] = await stream.collect(1, name="stream-closed")
        assert json.loads(end.data)["reason"] == "revoked"
    await has_lines(log, 4)
    assert lines(log)[3]["reason"] == "revoked"

    if door != "asgi":
        return  # daphne cancels the view's streams at once: nothing graceful to test
    # 3. A graceful shutdown (the fast path chains the server's SIGTERM
    # handler) sends the closing signal of the streams it ends.
    async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
        await has_lines(log, 5)
        server.restart()
        [end] = await stream.collect(1, name="stream-closed")
        assert json.loads(end.data)["reason"] == "shutdown"
    await has_lines(log, 6)
    last = lines(log)[5]
    assert last["signal"] == "closed" and last["reason"] == "shutdown" and last["user"] == name


@contextmanager
def slow_receivers(kind: str, server_db: str, seconds: int) -> Iterator[tuple[Server, Path]]:
    """A ``kind`` server whose receivers sleep ``seconds``, and their log."""
    with tempfile.TemporaryDirectory(prefix="lifecycle-") as tmp:
        log = Path(tmp) / "signals.jsonl"
        log.touch()
        env = {
            "SSE_TEST_DB": server_db,
            "SSE_TEST_LAYER": "memory",
            "SSE_TEST_LIFECYCLE_LOG": str(log),
            "SSE_TEST_LIFECYCLE_SLOW": str(seconds),
        }
        with running_server(kind, **env) as server:
            yield server, log


async def open_streams(
    stack: AsyncExitStack, client: httpx.AsyncClient, server: Server, count: int
) -> None:
    for _ in range(count):
        url = f"{server.url}/sse/?channel=news:{unique('slow')}"
        await stack.enter_async_context(open_stream(client, url))


@pytest.mark.timeout(120)
async def test_slow_receivers_delay_no_snapshot_of_a_new_stream(
    server_db: str, client: httpx.AsyncClient
) -> None:
    with slow_receivers("uvicorn", server_db, 20) as (server, log):
        async with AsyncExitStack() as stack:
            # More slow stream_opened receivers than there are threads (4).
            await open_streams(stack, client, server, 6)
            # A snapshot runs the application's code on a thread too: not
            # behind the receivers, which are still asleep.
            url = f"{server.url}/sse/?channel=counter:{unique('c')}"
            async with open_stream(client, url) as stream:
                [snapshot] = await stream.collect(1, name="snapshot", timeout=10.0)
            assert json.loads(snapshot.data)["data"]["count"] == 0
            assert lines(log) == []  # not one receiver has finished


#: Seconds a graceful stop may take (the server's own stop, the shutdown
#: grace, the wait for signals in flight) on a busy machine: far less than
#: the receivers sleep.
STOP_BOUND = 15.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_a_graceful_stop_does_not_wait_for_slow_receivers(
    server_db: str, client: httpx.AsyncClient, kind: str
) -> None:
    # A receiver is the application's code (a webhook to a slow host): the
    # threads that run it must not keep a stopped server's process alive.
    with slow_receivers(kind, server_db, 60) as (server, _):
        async with AsyncExitStack() as stack:
            # More streams than signal threads (4): sends wait in the queue too.
            await open_streams(stack, client, server, 6)
            started = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
            try:
                code = server.proc.wait(STOP_BOUND)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {STOP_BOUND}s after SIGTERM:\n{server.output()}")
        assert time.monotonic() - started < STOP_BOUND
        assert code in (0, -signal.SIGTERM), server.output()  # uvicorn re-raises it
