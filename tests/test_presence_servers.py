"""Presence across real server processes on a real Redis: two servers, a
third process that reads ``presence()``, kill -9, a Redis restart, a storm."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.presence_client import RawReader, following, until
from tests.servers import RedisServer, Server, run_python, running_server
from tests.sse_client import login, open_stream, unique

pytestmark = [pytest.mark.redis, pytest.mark.server]

HEARTBEAT, TIMEOUT = 0.5, 1.5
#: The documented bound of a dead process's leaves, with room for a busy machine.
LEAVE_BOUND = HEARTBEAT + TIMEOUT + 3.0


def _env(server_db: str, redis: str, **extra: str) -> dict[str, str]:
    return {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": redis,
        "SSE_KEEPALIVE": "0.5",
        "SSE_PRESENCE_HEARTBEAT": str(HEARTBEAT),
        "SSE_PRESENCE_TIMEOUT": str(TIMEOUT),
        "SSE_PUBLISH_TIMEOUT": "1",
        **extra,
    }


@pytest.fixture
def two_servers(
    server_db: str, private_redis_server: RedisServer
) -> Iterator[tuple[Server, Server, RedisServer]]:
    env = _env(server_db, private_redis_server.url)
    with ExitStack() as stack:
        one = stack.enter_context(running_server("daphne", **env, SSE_TEST_DOOR="view"))
        two = stack.enter_context(running_server("uvicorn", **env, SSE_TEST_DOOR="fast"))
        yield one, two, private_redis_server


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    made = [httpx.AsyncClient(timeout=30.0) for _ in range(3)]
    try:
        yield made
    finally:
        for c in made:
            await c.aclose()


async def read_presence(redis: str, server_db: str, channel: str) -> dict[str, Any]:
    env = {"SSE_TEST_LAYER": "redis", "REDIS_URL": redis, "SSE_TEST_DB": server_db}
    status, out, err = await run_python("-m", "tests.presence_reader", channel, env=env)
    assert status == 0, out + err
    return json.loads(out)  # type: ignore[no-any-return]


async def test_a_member_on_each_server_then_one_killed(
    two_servers: tuple[Server, Server, RedisServer],
    server_db: str,
    clients: list[httpx.AsyncClient],
) -> None:
    one, two, redis = two_servers
    channel = f"lobby:{unique()}"
    alice, bob, carol = clients
    await login(alice, one.url, "p-alice")
    await login(bob, two.url, "p-bob")
    await login(carol, one.url, "p-carol")
    async with (
        open_stream(alice, f"{one.url}/sse/?channel={channel}") as s1,
        open_stream(bob, f"{two.url}/sse/?channel={channel}") as s2,
        open_stream(carol, f"{one.url}/sse/?channel={channel}") as s3,
        following(s1, s2, s3) as views,
    ):
        everyone = {"<b>p-alice</b>", "<b>p-bob</b>", "<b>p-carol</b>"}
        await until(lambda: all(v.names == everyone for v in views), 10, "all see all")
        seen = await read_presence(redis.url, server_db, channel)
        assert {m["data"]["name"] for m in seen["members"]} == everyone
        assert seen["users"] == 3 and seen["streams"] == 3
        # The member callable returned only "name": nothing else is sent.
        assert all(set(m["data"]) == {"name"} for m in seen["members"])

        two.proc.kill()  # kill -9: bob's process says nothing
        two.proc.wait(10)
        # Within the documented bound (until() fails past it).
        await until(
            lambda: all(v.names == everyone - {"<b>p-bob</b>"} for v in views[::2]),
            LEAVE_BOUND,
            "bob's leave after kill -9",
        )
        seen = await read_presence(redis.url, server_db, channel)
        assert {m["data"]["name"] for m in seen["members"]} == everyone - {"<b>p-bob</b>"}
        assert seen["streams"] == 2


async def test_three_tabs_are_one_member_and_leave_with_the_last(
    two_servers: tuple[Server, Server, RedisServer],
    server_db: str,
    clients: list[httpx.AsyncClient],
) -> None:
    one, two, redis = two_servers
    channel = f"desk:{2 * (abs(hash(unique())) % 10**6)}"
    alice, bob, _ = clients
    await login(alice, one.url, "tabs-alice")
    await login(bob, two.url, "tabs-bob")
    async with (
        open_stream(bob, f"{two.url}/sse/?channel={channel}") as w,
        following(w) as [watcher],
    ):
        async with (
            open_stream(alice, f"{one.url}/sse/?channel={channel}") as t1,
            open_stream(alice, f"{two.url}/sse/?channel={channel}") as t2,
            open_stream(alice, f"{one.url}/sse/?channel={channel}") as t3,
        ):
            await until(lambda: watcher.names == {"tabs-alice", "tabs-bob"}, 10, "joined")
            for tab in (t1, t2, t3):  # each snapshot is read after the tab was counted
                await tab.collect(1, name="presence")
            seen = await read_presence(redis.url, server_db, channel)
            assert seen["users"] == 2 and seen["streams"] == 4
            # The default member data: pk and display name, never the email.
            assert all(set(m["data"]) == {"id", "name"} for m in seen["members"])
            joins = [e for e in w.events if e.event == "presence.join"]
            assert [json.loads(e.data)["member"]["name"] for e in joins].count("tabs-alice") == 1
            assert t1.hello and t2.hello and t3.hello
        await until(lambda: watcher.names == {"tabs-bob"}, 10, "left with the last tab")


async def test_redis_restart_rebuilds_presence_from_live_streams(
    two_servers: tuple[Server, Server, RedisServer],
    server_db: str,
    clients: list[httpx.AsyncClient],
) -> None:
    one, two, redis = two_servers
    channel = f"lobby:{unique()}"
    alice, bob, _ = clients
    await login(alice, one.url, "rr-alice")
    await login(bob, two.url, "rr-bob")
    everyone = {"<b>rr-alice</b>", "<b>rr-bob</b>"}
    async with (
        open_stream(alice, f"{one.url}/sse/?channel={channel}") as s1,
        open_stream(bob, f"{two.url}/sse/?channel={channel}") as s2,
        following(s1, s2) as views,
    ):
        await until(lambda: all(v.names == everyone for v in views), 10, "all see all")
        before = [v.snapshots for v in views]
        redis.kill()
        redis.start()  # empty: no persistence
        # The next heartbeat re-adds both members; each server's streams
        # get a fresh snapshot, and the lists stay right meanwhile.
        await until(
            lambda: all(v.snapshots > b for v, b in zip(views, before, strict=True)),
            20,
            "re-snapshot",
        )
        await until(lambda: all(v.names == everyone for v in views), 10, "rebuilt")
        seen = await read_presence(redis.url, server_db, channel)
        assert {m["data"]["name"] for m in seen["members"]} == everyone
        assert seen["streams"] == 2


async def test_a_reader_without_access_is_refused(
    two_servers: tuple[Server, Server, RedisServer], clients: list[httpx.AsyncClient]
) -> None:
    one, two, _ = two_servers
    alice, _, anonymous = clients
    await login(alice, one.url, "denied-alice")
    for server in (one, two):
        async with open_stream(alice, f"{server.url}/sse/?channel=desk:3") as s:
            assert s.response.status_code == 403
        async with open_stream(anonymous, f"{server.url}/sse/?channel=desk:4") as s:
            assert s.response.status_code == 403


async def test_anonymous_streams_are_counted_not_listed(
    two_servers: tuple[Server, Server, RedisServer],
    server_db: str,
    clients: list[httpx.AsyncClient],
) -> None:
    one, two, redis = two_servers
    channel = f"lobby:{unique()}"
    anonymous = clients[2]
    async with (
        open_stream(anonymous, f"{one.url}/sse/?channel={channel}") as s1,
        open_stream(anonymous, f"{two.url}/sse/?channel={channel}") as s2,
    ):
        first = json.loads((await s2.collect(1, name="presence"))[0].data)
        assert first["members"] == [] and first["anonymous"] >= 1
        seen = await read_presence(redis.url, server_db, channel)
        assert seen == {"members": [], "users": 0, "streams": 2, "anonymous": 2}
        del s1


async def _sessions(server_db: str, prefix: str, count: int) -> list[str]:
    """Cookies of ``count`` new users' sessions, made in bulk in the servers' database."""
    status, out, err = await run_python(
        "-m", "tests.make_sessions", prefix, str(count), env={"SSE_TEST_DB": server_db}
    )
    assert status == 0, out + err
    return [f"sessionid={key}" for key in out.split()]


async def test_a_thousand_members_joining_at_once_converge(
    server_db: str, private_redis_server: RedisServer
) -> None:
    count = 1000
    # Each stream gets a join per member: 1,000 queued events must not be an
    # overflow here (an overflowed page reconnects and starts from a snapshot).
    # The two servers and the thousand readers share two busy cores: a 1.5 s
    # timeout would expire entries of a loop busy with the storm itself.
    env = _env(
        server_db,
        private_redis_server.url,
        SSE_QUEUE_SIZE="5000",
        SSE_PRESENCE_HEARTBEAT="2",
        SSE_PRESENCE_TIMEOUT="10",
    )
    channel = f"lobby:{unique()}"
    prefix = f"storm{unique()}-"
    cookies = await _sessions(server_db, prefix, count)
    assert len(cookies) == count
    with ExitStack() as stack:
        servers = [
            stack.enter_context(running_server("uvicorn", **env, SSE_TEST_DOOR="fast")),
            stack.enter_context(running_server("daphne", **env, SSE_TEST_DOOR="view")),
        ]
        readers = [
            RawReader("127.0.0.1", servers[i % 2].port, f"/sse/?channel={channel}", cookie)
            for i, cookie in enumerate(cookies)
        ]
        try:
            for reader in readers:  # all at once
                reader.start()
            await asyncio.wait_for(asyncio.gather(*(r.opened.wait() for r in readers)), 120)
            assert {r.status for r in readers} == {200}
            expected = {f"<b>{prefix}{i}</b>" for i in range(count)}
            await until(lambda: all(r.view.names == expected for r in readers), 120, "converged")
            seen = await read_presence(private_redis_server.url, server_db, channel)
            assert seen["users"] == count and seen["streams"] == count
            assert {m["data"]["name"] for m in seen["members"]} == expected
        finally:
            await asyncio.gather(*(r.stop() for r in readers))


async def test_a_graceful_stop_takes_its_members_out_at_once(
    server_db: str, private_redis_server: RedisServer, clients: list[httpx.AsyncClient]
) -> None:
    # A timeout far longer than the wait below: only the stop itself can explain the leave.
    env = _env(server_db, private_redis_server.url, SSE_PRESENCE_TIMEOUT="60")
    channel = f"lobby:{unique()}"
    alice, bob, _ = clients
    with ExitStack() as stack:
        one = stack.enter_context(running_server("uvicorn", **env, SSE_TEST_DOOR="fast"))
        two = stack.enter_context(running_server("daphne", **env, SSE_TEST_DOOR="view"))
        await login(alice, one.url, "gs-alice")
        await login(bob, two.url, "gs-bob")
        async with (
            open_stream(bob, f"{two.url}/sse/?channel={channel}") as s2,
            following(s2) as [view],
            open_stream(alice, f"{one.url}/sse/?channel={channel}") as s1,
        ):
            await until(lambda: view.names == {"<b>gs-alice</b>", "<b>gs-bob</b>"}, 10, "joined")
            one.proc.terminate()  # SIGTERM, a deploy: the fast path closes its streams
            # Well before the 60 s expiry: the stopping process said so itself.
            await until(lambda: view.names == {"<b>gs-bob</b>"}, 15, "leave on stop")
            seen = await read_presence(private_redis_server.url, server_db, channel)
            assert seen["users"] == 1
            assert [e.event for e in s1.events][-1:] in ([], ["stream-closed"])


async def test_a_stalled_redis_costs_a_new_stream_one_bounded_wait(
    two_servers: tuple[Server, Server, RedisServer],
    server_db: str,
    clients: list[httpx.AsyncClient],
) -> None:
    one, _, redis = two_servers
    channel = f"lobby:{unique()}"
    alice = clients[0]
    await login(alice, one.url, "stall-alice")
    assert redis.proc is not None
    try:
        async with open_stream(alice, f"{one.url}/sse/?channel=public") as warm:
            assert warm.hello  # the process's hub is up before Redis stalls
            redis.proc.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
            start = time.monotonic()
            await _stalled_then_back(alice, one, redis, channel, start)
    finally:
        redis.proc.send_signal(signal.SIGCONT)


async def _stalled_then_back(
    alice: httpx.AsyncClient, one: Server, redis: RedisServer, channel: str, start: float
) -> None:
    assert redis.proc is not None
    async with open_stream(alice, f"{one.url}/sse/?channel={channel}") as s:
        assert s.response.status_code == 200
        opened = time.monotonic() - start
        redis.proc.send_signal(signal.SIGCONT)
        # Redis answers again: the next heartbeat counts the stream in, and
        # the stream, which started without one, gets its snapshot.
        [snapshot] = await s.collect(1, name="presence", timeout=20)
        members = [m["member"] for m in json.loads(snapshot.data)["members"]]
        assert members == [{"name": "<b>stall-alice</b>"}]
    # The layer join and the presence count: SSE_PUBLISH_TIMEOUT (1 s) each at most.
    assert opened < 5


async def test_channel_occupied_and_vacated_once_across_processes(
    server_db: str,
    private_redis_server: RedisServer,
    clients: list[httpx.AsyncClient],
    tmp_path: Path,
) -> None:
    log = tmp_path / "signals.log"
    env = _env(server_db, private_redis_server.url, SSE_TEST_SIGNAL_LOG=str(log))
    channel = f"news:{unique()}"
    anonymous = clients[2]

    def lines(name: str) -> list[str]:
        text = log.read_text() if log.exists() else ""
        return [line for line in text.splitlines() if line.split()[1:] == [name, channel]]

    with ExitStack() as stack:
        one = stack.enter_context(running_server("uvicorn", **env, SSE_TEST_DOOR="fast"))
        two = stack.enter_context(running_server("daphne", **env, SSE_TEST_DOOR="view"))
        three = stack.enter_context(running_server("uvicorn", **env, SSE_TEST_DOOR="fast"))
        async with open_stream(anonymous, f"{one.url}/sse/?channel={channel}"):
            await until(lambda: len(lines("channel_occupied")) == 1, 10, "occupied")
            async with open_stream(anonymous, f"{two.url}/sse/?channel={channel}"):
                async with open_stream(anonymous, f"{three.url}/sse/?channel={channel}"):
                    await asyncio.sleep(HEARTBEAT * 2)  # beats pass: still occupied, once
                three.proc.kill()  # kill -9 with no stream left there: nothing changes
                assert lines("channel_vacated") == []
        await until(lambda: len(lines("channel_vacated")) == 1, LEAVE_BOUND, "vacated")
        assert len(lines("channel_occupied")) == 1
        # Occupied again later: a new first stream.
        async with open_stream(anonymous, f"{two.url}/sse/?channel={channel}"):
            await until(lambda: len(lines("channel_occupied")) == 2, 10, "occupied again")
        # Its process killed -9 while the stream is open: vacated after the expiry.
        async with open_stream(anonymous, f"{one.url}/sse/?channel={channel}") as s:
            await until(lambda: len(lines("channel_occupied")) == 3, 10, "occupied a third time")
            one.proc.kill()
            del s
        # Swept by the next update of a process that holds the channel: give it one.
        async with open_stream(anonymous, f"{two.url}/sse/?channel={channel}"):
            await until(lambda: len(lines("channel_vacated")) >= 2, LEAVE_BOUND, "swept")
