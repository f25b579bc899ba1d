"""Session changes end streams: password changes, deleted sessions and users,
on every process; a key rotation closes the old key's streams with "session
changed" and the client resumes under its new cookie. Real daphne and uvicorn
processes, both doors, and two processes sharing Redis."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.servers import ROOT, RedisServer, Server, base_env, running_server
from tests.sse_client import Stream, is_data_event, login, open_stream, publish, unique

pytestmark = pytest.mark.server

#: The default SSE_SESSION_CHECK_INTERVAL is 2 s: "within a few seconds".
WITHIN = 6.0
FINAL = {"revoked", "session ended", "password changed", "user deleted"}


@pytest.fixture
async def clients() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(timeout=15.0) as a,
        httpx.AsyncClient(timeout=15.0) as b,
    ):
        yield a, b


async def closed(stream: Stream, timeout: float = WITHIN) -> dict[str, Any]:
    [event] = await stream.collect(1, name="stream-closed", timeout=timeout)
    return json.loads(event.data)  # type: ignore[no-any-return]


async def numbers(stream: Stream, count: int) -> list[int]:
    """The next ``count`` private events; a ``stream-closed`` among them fails."""
    got = []
    for event in await stream.collect(count):
        assert event.event == "private", event
        got.append(json.loads(event.data)["n"])
    return got


async def status_of(client: httpx.AsyncClient, url: str) -> tuple[int, str]:
    async with client.stream("GET", url) as response:
        if response.status_code == 200:
            return 200, ""  # a stream: its body never ends
        return response.status_code, (await response.aread()).decode()


async def two_sessions(base: str, a: httpx.AsyncClient, b: httpx.AsyncClient) -> tuple[str, int]:
    """User U logged in twice: session S1 in ``a``, S2 in ``b``."""
    name = unique("u")
    pk = await login(a, base, name)
    assert await login(b, base, name) == pk
    assert a.cookies["sessionid"] != b.cookies["sessionid"]
    return name, pk


async def quiet_for(stream: Stream, seconds: float) -> None:
    """Nothing but keepalives arrives for ``seconds``: the stream stays open.

    The pending read is kept, not cancelled, so the stream reads on after."""
    events = stream._iter
    assert events is not None
    deadline = time.monotonic() + seconds
    while True:
        pending = asyncio.ensure_future(anext(events))
        done, _ = await asyncio.wait({pending}, timeout=max(deadline - time.monotonic(), 0))
        if not done:
            break
        if is_data_event(pending.result()):
            raise AssertionError(f"expected silence, got {pending.result()}")

    async def resumed() -> AsyncIterator[Any]:
        yield await pending
        async for event in events:
            yield event

    stream._iter = resumed()


# -- password change ----------------------------------------------------------


async def closed_at(stream: Stream, timeout: float = WITHIN) -> tuple[dict[str, Any], str]:
    """The ``stream-closed`` payload and its id, the position to resume from."""
    [event] = await stream.collect(1, name="stream-closed", timeout=timeout)
    return json.loads(event.data), event.id


async def test_password_change_ends_other_sessions_and_the_changer_resumes(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = clients
    _, pk = await two_sessions(server.url, a, b)
    url = f"{server.url}/sse/?channel=user:{pk}"
    old_key = a.cookies["sessionid"]
    async with open_stream(a, url) as s1, open_stream(b, url) as s2:
        await publish(a, server.url, f"user:{pk}", event="private", data={"n": 0})
        assert await numbers(s1, 1) == [0] and await numbers(s2, 1) == [0]
        response = await a.get(f"{server.url}/test/session/change-password/?update=1")
        response.raise_for_status()
        assert a.cookies["sessionid"] != old_key  # rotated, and still logged in
        # S2 is logged out by the password change: its stream ends for good.
        assert await closed(s2) == {"reason": "password changed", "reconnect": False}
        # S1's stream is the old key's: it closes, and the client comes back.
        payload, last = await closed_at(s1)
        assert payload == {"reason": "session changed", "reconnect": True}
    for n in range(1, 4):  # while the changer is away
        await publish(a, server.url, f"user:{pk}", event="private", data={"n": n})
    async with open_stream(a, url, headers={"Last-Event-ID": last}) as s1:
        assert await numbers(s1, 3) == [1, 2, 3]  # none lost, none twice
        await quiet_for(s1, 2 * 2.0 + 0.5)  # two more checks: the new key stays
        await publish(a, server.url, f"user:{pk}", event="private", data={"n": 4})
        assert await numbers(s1, 1) == [4]
        (await a.get(f"{server.url}/test/logout/")).raise_for_status()
        assert await closed(s1) == {"reason": "revoked", "reconnect": False}
    assert (await status_of(b, url))[0] == 403


async def test_a_stolen_cookies_stream_ends_when_the_victim_changes_the_password(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """The thief holds a copy of the victim's cookie; the victim's password
    change rotates it. The thief's open stream must not follow the rotation,
    and coming back with the copy is refused."""
    victim, thief = clients
    pk = await login(victim, server.url, unique("v"))
    stolen = victim.cookies["sessionid"]
    thief.cookies.set("sessionid", stolen)
    url = f"{server.url}/sse/?channel=user:{pk}"
    async with open_stream(thief, url) as s:
        r = await victim.get(f"{server.url}/test/session/change-password/?update=1")
        r.raise_for_status()
        assert victim.cookies["sessionid"] != stolen
        assert await closed(s) == {"reason": "session changed", "reconnect": True}
        await publish(victim, server.url, f"user:{pk}", event="private", data={"n": 1})
        assert s._iter is not None

        async def rest() -> list[Any]:
            return [e async for e in s._iter if is_data_event(e)]  # type: ignore[union-attr]

        assert await asyncio.wait_for(rest(), WITHIN) == []  # the body ends at the close
    status, body = await status_of(thief, url)
    assert status == 403, body


async def test_password_set_elsewhere_ends_every_session_stream(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = clients
    name, pk = await two_sessions(server.url, a, b)
    url = f"{server.url}/sse/?channel=user:{pk}"
    async with open_stream(a, url) as s1, open_stream(b, url) as s2:
        async with httpx.AsyncClient(timeout=15.0) as admin:
            response = await admin.get(
                f"{server.url}/test/session/set-password/", params={"username": name}
            )
            response.raise_for_status()
        assert await closed(s1) == {"reason": "password changed", "reconnect": False}
        assert await closed(s2) == {"reason": "password changed", "reconnect": False}
        # Nothing private after the close: the streams are over.
        await publish(a, server.url, f"user:{pk}", event="private", data={"n": 9})
    assert (await status_of(a, url))[0] == 403


async def test_key_rotation_closes_the_stream_and_the_new_key_resumes(
    server: Server, client: httpx.AsyncClient
) -> None:
    pk = await login(client, server.url, unique("rot"))
    url = f"{server.url}/sse/?channel=user:{pk}"
    async with open_stream(client, url) as stream:
        (await client.get(f"{server.url}/test/session/cycle-key/")).raise_for_status()
        payload, last = await closed_at(stream)
        assert payload == {"reason": "session changed", "reconnect": True}
    await publish(client, server.url, f"user:{pk}", event="private", data={"n": 1})
    async with open_stream(client, url, headers={"Last-Event-ID": last}) as stream:
        assert await numbers(stream, 1) == [1]
        (await client.get(f"{server.url}/test/logout/")).raise_for_status()
        assert await closed(stream) == {"reason": "revoked", "reconnect": False}


# -- deleted sessions and users -------------------------------------------------------


@pytest.mark.parametrize("how", ["admin-delete", "flush", "raw-sql"])
async def test_deleted_session_row_ends_its_streams(
    how: str,
    server: Server,
    server_db: str,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    _, pk = await two_sessions(server.url, a, b)
    url = f"{server.url}/sse/?channel=user:{pk}"
    s2_key = b.cookies["sessionid"]
    async with open_stream(a, url) as s1, open_stream(b, url) as s2:
        if how == "raw-sql":
            # No signal at all: the periodic check still finds it.
            with sqlite3.connect(server_db) as db:
                db.execute("DELETE FROM django_session WHERE session_key = ?", (s2_key,))
        else:
            path = "delete-session" if how == "admin-delete" else "flush-session"
            response = await a.get(f"{server.url}/test/session/{path}/", params={"key": s2_key})
            response.raise_for_status()
        data = await closed(s2)
        assert data["reconnect"] is False and data["reason"] in FINAL, data
        if how == "raw-sql":
            assert data["reason"] == "session ended"
        # The other session of the same user is untouched.
        await publish(a, server.url, f"user:{pk}", event="private", data={"n": 1})
        assert await numbers(s1, 1) == [1]
    assert (await status_of(b, url))[0] == 403


async def test_clearsessions_ends_the_stream_of_an_expired_session(
    server: Server, server_db: str, client: httpx.AsyncClient
) -> None:
    pk = await login(client, server.url, unique("clear"))
    url = f"{server.url}/sse/?channel=user:{pk}"
    key = client.cookies["sessionid"]
    async with open_stream(client, url) as stream:
        past = datetime.now(UTC) - timedelta(minutes=1)
        with sqlite3.connect(server_db) as db:
            db.execute(
                "UPDATE django_session SET expire_date = ? WHERE session_key = ?",
                (past.strftime("%Y-%m-%d %H:%M:%S.%f"), key),
            )
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "django", "clearsessions"],
            cwd=ROOT,
            env=base_env(SSE_TEST_DB=server_db),
            check=True,
            timeout=60,
        )
        with sqlite3.connect(server_db) as db:
            assert not db.execute(
                "SELECT 1 FROM django_session WHERE session_key = ?", (key,)
            ).fetchall()
        data = await closed(stream)
        # Found expired, or already deleted: either way it is over, and a
        # reconnection is refused.
        assert data in (
            {"reason": "session expired", "reconnect": True},
            {"reason": "session ended", "reconnect": False},
        ), data
    assert (await status_of(client, url))[0] == 403


async def test_deleted_user_ends_session_and_rest_framework_streams(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = clients
    name = unique("gone")
    pk = await login(a, server.url, name)
    response = await b.get(f"{server.url}/test/drf-token/", params={"username": name})
    auth = {"Authorization": f"Token {response.json()['key']}"}
    url = f"{server.url}/sse/?channel=user:{pk}"
    async with open_stream(a, url) as s1, open_stream(b, url, headers=auth) as s2:
        response = await b.get(f"{server.url}/test/session/delete-user/", params={"username": name})
        response.raise_for_status()
        for stream in (s1, s2):
            data = await closed(stream)
            assert data["reconnect"] is False and data["reason"] in {"revoked", "user deleted"}
    assert (await status_of(a, url))[0] == 403


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0) as c:
        yield c


# -- across processes --------------------------------------------------------------


@pytest.mark.redis
async def test_password_change_on_one_process_ends_streams_on_the_other(
    redis_servers: tuple[Server, Server], clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    one, two = redis_servers
    a, b = clients
    _, pk = await two_sessions(one.url, a, b)
    async with (
        open_stream(a, f"{two.url}/sse/?channel=user:{pk}") as s1,
        open_stream(b, f"{two.url}/sse/?channel=user:{pk}") as s2,
    ):
        response = await a.get(f"{one.url}/test/session/change-password/?update=1")
        response.raise_for_status()
        assert await closed(s2) == {"reason": "password changed", "reconnect": False}
        # The changer's stream on the other process closes with the old key...
        payload, last = await closed_at(s1)
        assert payload == {"reason": "session changed", "reconnect": True}
    for n in range(3):
        await publish(a, one.url, f"user:{pk}", event="private", data={"n": n})
    # ...and resumes there under the new one, nothing lost.
    async with open_stream(
        a, f"{two.url}/sse/?channel=user:{pk}", headers={"Last-Event-ID": last}
    ) as s1:
        assert await numbers(s1, 3) == [0, 1, 2]


@pytest.mark.redis
async def test_deleted_session_on_one_process_ends_streams_on_the_other(
    redis_servers: tuple[Server, Server], clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    one, two = redis_servers
    a, b = clients
    _, pk = await two_sessions(one.url, a, b)
    async with open_stream(b, f"{two.url}/sse/?channel=user:{pk}") as s2:
        response = await a.get(
            f"{one.url}/test/session/flush-session/", params={"key": b.cookies["sessionid"]}
        )
        response.raise_for_status()
        data = await asyncio.wait_for(closed(s2), WITHIN)
        assert data["reconnect"] is False and data["reason"] in FINAL, data


@pytest.mark.redis
async def test_deleted_user_on_one_process_ends_streams_on_the_other(
    redis_servers: tuple[Server, Server], clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    one, two = redis_servers
    a, b = clients
    name = unique("xgone")
    pk = await login(a, one.url, name)
    async with open_stream(a, f"{two.url}/sse/?channel=user:{pk}") as stream:
        response = await b.get(f"{one.url}/test/session/delete-user/", params={"username": name})
        response.raise_for_status()
        data = await asyncio.wait_for(closed(stream), WITHIN)
        assert data["reconnect"] is False and data["reason"] in {"revoked", "user deleted"}


@pytest.mark.redis
async def test_password_change_ends_streams_on_another_process_with_the_layer_down(
    server_db: str,
    private_redis_server: RedisServer,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    # The check reads the database, not the channel layer: Redis being gone
    # delays no session change.
    env = {
        "SSE_TEST_DB": server_db,
        "SSE_TEST_LAYER": "redis",
        "REDIS_URL": private_redis_server.url,
        "SSE_KEEPALIVE": "0.5",
    }
    a, b = clients
    with (
        running_server("daphne", **env, SSE_TEST_DOOR="view") as one,
        running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as two,
    ):
        name, pk = await two_sessions(one.url, a, b)
        async with (
            open_stream(a, f"{two.url}/sse/?channel=user:{pk}") as s1,
            open_stream(b, f"{two.url}/sse/?channel=user:{pk}") as s2,
        ):
            private_redis_server.kill()
            response = await a.get(
                f"{one.url}/test/session/set-password/", params={"username": name}
            )
            response.raise_for_status()
            assert await closed(s1) == {"reason": "password changed", "reconnect": False}
            assert await closed(s2) == {"reason": "password changed", "reconnect": False}
