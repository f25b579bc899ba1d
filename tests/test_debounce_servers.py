"""Refresh hooks across real processes: a bulk edit of 1,000 rows in one process,
counted on the streams of a real server sharing Redis; exit, rollback, kill -9,
server shutdown and a stalled Redis.

Every count ends with a sentinel: after the editing process has exited (or the
server sending the refreshes has stopped), ``tests.publisher`` sends ``done``
on each channel; the stream is read up to it, so "exactly one refresh" needs
no sleep."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from tests.bulk_edit import channels
from tests.servers import RedisServer, Server, run_python, running_server
from tests.sse_client import Stream, open_stream, unique

pytestmark = [pytest.mark.server, pytest.mark.redis]

COUNT = 1000
REFRESH = "testapp.note.refresh"


def layer_env(server_db: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": redis_url,
        "SSE_TEST_REFRESH_HOOKS": "1",
        **extra,
    }


@asynccontextmanager
async def streams(server: Server, names: list[str]) -> AsyncIterator[dict[str, Stream]]:
    """One open stream per channel, so events are counted per channel."""
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
        opened = {}
        for name in names:
            url = f"{server.url}/sse/?channel={name}"
            opened[name] = await stack.enter_async_context(open_stream(client, url))
        yield opened


async def bulk_edit(key: str, mode: str, env: dict[str, str]) -> dict[str, float]:
    status, out, err = await run_python(
        "-m", "tests.bulk_edit", key, str(COUNT), mode, env=env, timeout=120.0
    )
    if mode == "kill":
        assert status == -signal.SIGKILL, out + err
    else:
        assert status == 0, out + err
    result: dict[str, float] = json.loads(out.strip().splitlines()[0])
    return result


async def refreshes(opened: dict[str, Stream], env: dict[str, str]) -> dict[str, int]:
    """Send the sentinel, read each stream up to it; the refreshes seen per channel."""
    status, out, err = await run_python(
        "-m", "tests.publisher", ",".join(opened), "1", "done", env=env, timeout=60.0
    )
    assert status == 0, out + err
    counts = {}
    for name, stream in opened.items():
        seen = 0
        while (event := await stream.next_event(20.0)).event != "done":
            if event.event == REFRESH:
                assert json.loads(event.data) == {"model": "testapp.note", "channel": name}
                seen += 1
        counts[name] = seen
    return counts


@pytest.mark.parametrize(
    ("mode", "window", "windows", "sent"),
    [
        # The windows close by themselves while the process waits.
        ("wait", "0.5", 1, 1),
        # A window far longer than the process lives: only atexit can send it.
        ("exit", "30", 1, 1),
        # Nothing committed, nothing marked.
        ("rollback", "0.5", 0, 0),
        # The documented limit (docs/model-events.rst): the rows are committed,
        # the open windows' refreshes die with the process.
        ("kill", "30", 1, 0),
    ],
)
async def test_a_bulk_edit_of_1000_rows_is_at_most_one_event_per_channel(
    mode: str, window: str, windows: int, sent: int, server_db: str, redis_url: str
) -> None:
    key = unique(mode)
    env = layer_env(server_db, redis_url)
    with running_server("uvicorn", **env) as server:
        async with streams(server, channels(key)) as opened:
            result = await bulk_edit(key, mode, {**env, "SSE_REFRESH_DEBOUNCE": window})
            counts = await refreshes(opened, env)
    # One window per channel, not one per row.
    assert result["pending"] == windows * len(channels(key))
    assert counts == dict.fromkeys(channels(key), sent)


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_a_server_shutting_down_sends_its_open_windows(
    kind: str, server_db: str, redis_url: str
) -> None:
    key = unique("shutdown")
    env = layer_env(server_db, redis_url)
    with running_server("uvicorn", **env) as reader:
        async with streams(reader, channels(key)) as opened:
            with running_server(kind, **env, SSE_REFRESH_DEBOUNCE="30") as editor:
                async with httpx.AsyncClient(timeout=120.0) as client:
                    # A stream on the editing server too: its shutdown path runs.
                    url = f"{editor.url}/sse/?channel=notes:{key}"
                    async with open_stream(client, url) as own:
                        answer = await client.get(
                            f"{editor.url}/test/bulk-edit/", params={"key": key, "count": COUNT}
                        )
                        assert answer.json()["pending"] == len(channels(key))
                        editor.proc.send_signal(signal.SIGTERM)
                        events = []
                        while (event := await own.next_event(20.0)).event != "stream-closed":
                            events.append(event)
                        closed = json.loads(event.data)
                editor.proc.wait(30)
            counts = await refreshes(opened, env)
    assert closed == {"reason": "shutdown", "reconnect": True}
    assert counts == dict.fromkeys(channels(key), 1)


async def test_a_stalled_redis_never_blocks_the_edit_and_the_refreshes_arrive(
    server_db: str, private_redis_server: RedisServer
) -> None:
    redis = private_redis_server
    assert redis.proc is not None
    key = unique("stall")
    env = layer_env(server_db, redis.url)
    with running_server("uvicorn", **env, SSE_HISTORY_POLL="0.5") as server:
        async with streams(server, channels(key)) as opened:
            os.kill(redis.proc.pid, signal.SIGSTOP)
            try:
                # The edit commits; each refresh waits SSE_PUBLISH_TIMEOUT for the
                # layer at most, is stored, and the process exits in bounded time
                # (run_python's timeout fails the test otherwise).
                result = await bulk_edit(key, "wait", {**env, "SSE_PUBLISH_TIMEOUT": "0.5"})
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            counts = await refreshes(opened, env)
    assert result["pending"] == len(channels(key))
    # Stored, so the catch-up poll delivered what the layer could not.
    assert counts == dict.fromkeys(channels(key), 1)


async def test_many_readers_each_get_one_refresh(server_db: str, redis_url: str) -> None:
    key = unique("many")
    channel = f"notes:{key}"
    env = layer_env(server_db, redis_url)
    readers = 100
    with running_server("uvicorn", **env) as server:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0, limits=limits))
            opened = [
                await stack.enter_async_context(
                    open_stream(client, f"{server.url}/sse/?channel={channel}")
                )
                for _ in range(readers)
            ]
            await bulk_edit(key, "wait", env)
            status, out, err = await run_python(
                "-m", "tests.publisher", channel, "1", "done", env=env, timeout=60.0
            )
            assert status == 0, out + err
            counts = []
            for stream in opened:
                seen = 0
                while (event := await stream.next_event(20.0)).event != "done":
                    seen += event.event == REFRESH
                counts.append(seen)
    assert counts == [1] * readers
