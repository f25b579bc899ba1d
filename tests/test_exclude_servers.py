"""``send_event(..., exclude=request)`` across real servers on Redis: the tab
that made the change gets no echo, the user's other tabs do, and nobody can
mute another user's stream."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.servers import Server
from tests.sse_client import login, open_stream, unique

pytestmark = [pytest.mark.redis, pytest.mark.server]


@pytest.fixture
async def clients() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with httpx.AsyncClient(timeout=30.0) as a, httpx.AsyncClient(timeout=30.0) as b:
        yield a, b


def tab_id() -> str:
    return secrets.token_urlsafe(16)  # as the JS helper makes them


async def post(
    client: httpx.AsyncClient, base: str, path: str, connection: str | None, **body: object
) -> None:
    headers = {"X-SSE-Connection": connection} if connection else {}
    response = await client.post(f"{base}/test/{path}/", json=body, headers=headers)
    response.raise_for_status()


@pytest.mark.parametrize(
    ("path", "via"),
    [
        ("publish-to-others", "argument"),
        ("publish-to-others", "context"),
        ("apublish-to-others", ""),
    ],
)
async def test_the_tab_that_made_the_change_gets_no_echo(
    redis_servers: tuple[Server, Server],
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    path: str,
    via: str,
) -> None:
    one, two = redis_servers
    alice, _ = clients
    await login(alice, one.url, "ex-alice")
    channel = f"news:{unique()}"
    mine, other = tab_id(), tab_id()
    async with (
        open_stream(alice, f"{one.url}/sse/?channel={channel}&connection={mine}") as me,
        open_stream(alice, f"{two.url}/sse/?channel={channel}&connection={other}") as tab2,
        open_stream(alice, f"{two.url}/sse/?channel={channel}") as tab3,
    ):
        await post(alice, one.url, path, mine, channel=channel, data={"n": 1}, via=via)
        await post(alice, two.url, "publish-sync", None, channel=channel, data={"n": 2})
        for stream in (tab2, tab3):
            got = await stream.collect(2)
            assert [json.loads(e.data)["n"] for e in got] == [1, 2]
        [only] = await me.collect(1)
        assert json.loads(only.data) == {"n": 2}
        # Its id covers the skipped event: a reconnect does not replay the echo.
        assert only.id == got[-1].id


@pytest.mark.parametrize("persist", [True, False])
async def test_notify_on_the_request_skips_only_the_tab_that_made_the_change(
    redis_servers: tuple[Server, Server],
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    persist: bool,
) -> None:
    one, two = redis_servers
    alice, _ = clients
    pk = await login(alice, one.url, f"ex-notify-{unique()}")
    channel = f"user:{pk}"
    mine, other = tab_id(), tab_id()
    async with (
        open_stream(alice, f"{one.url}/sse/?channel={channel}&connection={mine}") as me,
        open_stream(alice, f"{two.url}/sse/?channel={channel}&connection={other}") as tab2,
    ):
        await post(alice, one.url, "notify-to-others", mine, n=1, persist=persist)
        await post(alice, two.url, "notify-to-others", None, n=2, persist=persist)
        got = await tab2.collect(2, name="notification")
        assert [json.loads(e.data)["n"] for e in got] == [1, 2]
        [only] = await me.collect(1, name="notification")
        assert json.loads(only.data)["n"] == 2
        if persist:
            # The unread count in the event is the truth, excluded tab or not.
            assert json.loads(only.data)["unread"] == 2


async def test_nobody_can_mute_another_users_stream(
    redis_servers: tuple[Server, Server], clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    one, two = redis_servers
    alice, mallory = clients
    await login(alice, one.url, "ex-victim")
    await login(mallory, two.url, "ex-mallory")
    channel = f"news:{unique()}"
    victim = tab_id()
    async with open_stream(alice, f"{one.url}/sse/?channel={channel}&connection={victim}") as s:
        # Mallory learnt the victim's id: it names no stream of hers.
        await post(mallory, two.url, "publish-to-others", victim, channel=channel, data={"n": 1})
        # A malformed header excludes nothing.
        await post(alice, one.url, "publish-to-others", "x" * 300, channel=channel, data={"n": 2})
        await post(alice, one.url, "publish-to-others", "bad id!", channel=channel, data={"n": 3})
        got = await s.collect(3)
        assert [json.loads(e.data)["n"] for e in got] == [1, 2, 3]


@pytest.mark.parametrize("bad", ["short", "x" * 65, "has space", "semi;colon", "%00" * 8])
async def test_a_malformed_connection_id_is_a_400(
    redis_servers: tuple[Server, Server],
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    bad: str,
) -> None:
    for server in redis_servers:
        async with open_stream(
            clients[0], f"{server.url}/sse/?channel=public&connection={bad}"
        ) as s:
            assert s.response.status_code == 400
            assert "malformed connection id" in (await s.response.aread()).decode()
