"""``stream_opened`` and ``stream_closed`` from real servers, with receivers that raise.

The test project's receivers (tests/testapp/lifecycle.py) append a JSON line
per signal to a file, then raise: the streams must carry on, the hub must
serve the next stream, and each stream's two lines must say who, which
channels, which door, why it closed and for how long.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
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


@pytest.mark.timeout(120)
async def test_slow_receivers_delay_no_snapshot_of_a_new_stream(
    server_db: str, client: httpx.AsyncClient
) -> None:
    with tempfile.TemporaryDirectory(prefix="lifecycle-") as tmp:
        log = Path(tmp) / "signals.jsonl"
        log.touch()
        env = {
            "SSE_TEST_DB": server_db,
            "SSE_TEST_LAYER": "memory",
            "SSE_TEST_LIFECYCLE_LOG": str(log),
            "SSE_TEST_LIFECYCLE_SLOW": "20",
        }
        with running_server("uvicorn", **env) as server:
            async with AsyncExitStack() as stack:
                # More slow stream_opened receivers than there are threads (4).
                for _ in range(6):
                    await stack.enter_async_context(
                        open_stream(client, f"{server.url}/sse/?channel=news:{unique('slow')}")
                    )
                # A snapshot runs the application's code on a thread too: not
                # behind the receivers, which are still asleep.
                url = f"{server.url}/sse/?channel=counter:{unique('c')}"
                async with open_stream(client, url) as stream:
                    [snapshot] = await stream.collect(1, name="snapshot", timeout=10.0)
                assert json.loads(snapshot.data)["data"]["count"] == 0
                assert lines(log) == []  # not one receiver has finished
