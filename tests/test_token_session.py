"""Stream tokens belong to the session that asked for them: its logout, its
password change and its expiry end their streams and refuse the unused ones.
Real daphne and uvicorn processes, both doors."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import postgres_env
from tests.servers import Server, running_server
from tests.sse_client import Stream, login, open_stream, publish, unique
from tests.test_access_servers import drf_key, get_token

pytestmark = pytest.mark.server

ENDED = "token refused: the session that requested it has ended"


@pytest.fixture
async def clients() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    # ``page`` holds the session; ``bare`` has no cookie (another origin, a native app).
    async with httpx.AsyncClient(timeout=15.0) as page, httpx.AsyncClient(timeout=15.0) as bare:
        yield page, bare


async def closed(stream: Stream, timeout: float = 8.0) -> dict[str, Any]:
    [event] = await stream.collect(1, name="stream-closed", timeout=timeout)
    return json.loads(event.data)  # type: ignore[no-any-return]


async def status_of(client: httpx.AsyncClient, url: str) -> tuple[int, str]:
    async with client.stream("GET", url) as response:
        if response.status_code == 200:
            return 200, ""  # a stream: its body never ends
        return response.status_code, (await response.aread()).decode()


async def token_for(page: httpx.AsyncClient, base: str, channel: str) -> str:
    response = await get_token(page, base, channel)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def test_unused_token_is_refused_after_logout(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    pk = await login(page, server.url, unique("replay"))
    token = await token_for(page, server.url, f"user:{pk}")
    (await page.get(f"{server.url}/test/logout/")).raise_for_status()
    status, reason = await status_of(bare, f"{server.url}/sse/?token={token}")
    assert status == 403 and reason.startswith(ENDED), reason
    assert reason.count("\n") == 1


async def test_token_stream_ends_when_its_session_logs_out(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    pk = await login(page, server.url, unique("tout"))
    token = await token_for(page, server.url, f"user:{pk}")
    async with open_stream(bare, f"{server.url}/sse/?token={token}") as stream:
        await publish(bare, server.url, f"user:{pk}", event="private", data={"n": 1})
        [event] = await stream.collect(1)
        assert event.event == "private"
        (await page.get(f"{server.url}/test/logout/")).raise_for_status()
        assert await closed(stream) == {"reason": "revoked", "reconnect": False}


async def test_token_stream_ends_when_the_password_changes_elsewhere(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    name = unique("tpw")
    pk = await login(page, server.url, name)
    token = await token_for(page, server.url, f"user:{pk}")
    unused = await token_for(page, server.url, f"user:{pk}")
    async with open_stream(bare, f"{server.url}/sse/?token={token}") as stream:
        response = await bare.get(
            f"{server.url}/test/session/set-password/", params={"username": name}
        )
        response.raise_for_status()
        assert await closed(stream) == {"reason": "password changed", "reconnect": False}
    status, reason = await status_of(bare, f"{server.url}/sse/?token={unused}")
    assert status == 403 and reason.startswith(ENDED), reason


async def test_token_stream_closes_at_the_issuing_sessions_expiry(
    server: Server, server_db: str, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    pk = await login(page, server.url, unique("texp"))
    token = await token_for(page, server.url, f"user:{pk}")
    soon = datetime.now(UTC) + timedelta(seconds=2)
    with sqlite3.connect(server_db) as db:
        db.execute(
            "UPDATE django_session SET expire_date = ? WHERE session_key = ?",
            (soon.strftime("%Y-%m-%d %H:%M:%S.%f"), page.cookies["sessionid"]),
        )
    async with open_stream(bare, f"{server.url}/sse/?token={token}") as stream:
        assert await closed(stream) == {"reason": "session expired", "reconnect": True}


async def test_an_unused_token_of_a_rotated_session_is_refused(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    pk = await login(page, server.url, unique("trot"))
    token = await token_for(page, server.url, f"user:{pk}")
    (await page.get(f"{server.url}/test/session/cycle-key/")).raise_for_status()
    status, body = await status_of(bare, f"{server.url}/sse/?token={token}")
    assert status == 403 and body.startswith(ENDED) and "session changed" in body, body
    # The new key asks for a new token, which works.
    token = await token_for(page, server.url, f"user:{pk}")
    async with open_stream(bare, f"{server.url}/sse/?token={token}") as stream:
        assert stream.response.status_code == 200


async def test_a_token_fetched_with_a_stolen_cookie_dies_with_the_victims_password_change(
    server: Server,
) -> None:
    async with (
        httpx.AsyncClient(timeout=15.0) as victim,
        httpx.AsyncClient(timeout=15.0) as thief,
        httpx.AsyncClient(timeout=15.0) as bare,
    ):
        pk = await login(victim, server.url, unique("v"))
        for name, value in victim.cookies.items():
            thief.cookies.set(name, value)
        token = await token_for(thief, server.url, f"user:{pk}")
        r = await victim.get(f"{server.url}/test/session/change-password/?update=1")
        r.raise_for_status()
        status, body = await status_of(bare, f"{server.url}/sse/?token={token}")
        assert status == 403 and body.startswith(ENDED), body
        assert "\n" not in body.strip()


async def test_token_asked_for_with_a_rest_framework_key_is_not_tied_to_a_session(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    key, pk = await drf_key(page, server.url, unique("tdrf"))
    response = await bare.post(
        f"{server.url}/sse/token/",
        data={"channel": f"user:{pk}"},
        headers={"Authorization": f"Token {key}"},
    )
    token = response.json()["token"]
    async with open_stream(bare, f"{server.url}/sse/?token={token}") as stream:
        assert stream.response.status_code == 200


@pytest.mark.postgres
async def test_on_postgresql_a_token_opens_one_stream_and_sessions_end_across_processes(
    postgres_db: str,
) -> None:
    # Two processes on the in-memory layer: nothing but the database joins them.
    env = {**postgres_env(postgres_db), "SSE_TEST_LAYER": "memory", "SSE_KEEPALIVE": "0.5"}
    with running_server("uvicorn", **env) as one, running_server("daphne", **env) as two:
        async with (
            httpx.AsyncClient(timeout=15.0) as page,
            httpx.AsyncClient(timeout=15.0) as other,
            httpx.AsyncClient(timeout=15.0, limits=httpx.Limits(max_connections=20)) as bare,
        ):
            name = unique("pg")
            pk = await login(page, one.url, name)
            await login(other, one.url, name)
            token = await token_for(page, one.url, f"user:{pk}")
            urls = [f"{srv.url}/sse/?token={token}" for srv in (one, two) for _ in range(6)]
            results = await asyncio.gather(*(status_of(bare, url) for url in urls))
            assert sorted(status for status, _ in results) == [200] + [403] * 11
            assert {r for s, r in results if s == 403} == {
                "token already used: request a new one for each stream\n"
            }
            async with open_stream(other, f"{two.url}/sse/?channel=user:{pk}") as stream:
                response = await page.get(
                    f"{one.url}/test/session/set-password/", params={"username": name}
                )
                response.raise_for_status()
                assert await closed(stream) == {"reason": "password changed", "reconnect": False}


DRF_ENDED = "token refused: the REST framework token that requested it was deleted"


async def drf_stream_token(client: httpx.AsyncClient, base: str, key: str, channel: str) -> str:
    response = await client.post(
        f"{base}/sse/token/", data={"channel": channel}, headers={"Authorization": f"Token {key}"}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def test_deleting_a_rest_framework_token_refuses_the_stream_tokens_it_asked_for(
    server: Server, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    name = unique("drfdel")
    key, pk = await drf_key(page, server.url, name)
    token = await drf_stream_token(bare, server.url, key, f"user:{pk}")
    (
        await bare.get(f"{server.url}/test/drf-token/delete/", params={"username": name})
    ).raise_for_status()
    status, reason = await status_of(bare, f"{server.url}/sse/?token={token}")
    assert (status, reason) == (403, DRF_ENDED + "\n")
    # The user's new Token asks for a new stream token, which works.
    key, _ = await drf_key(page, server.url, name)
    token = await drf_stream_token(bare, server.url, key, f"user:{pk}")
    async with open_stream(bare, f"{server.url}/sse/?token={token}") as stream:
        assert stream.response.status_code == 200


async def test_deleting_a_rest_framework_token_closes_its_streams_in_every_process(
    redis_servers: tuple[Server, Server],
) -> None:
    one, two = redis_servers
    async with (
        httpx.AsyncClient(timeout=15.0) as page,
        httpx.AsyncClient(timeout=15.0, limits=httpx.Limits(max_connections=20)) as bare,
    ):
        name = unique("drfstream")
        pk = await login(page, one.url, name)
        key, _ = await drf_key(bare, one.url, name)
        channel = f"user:{pk}"
        header = {"Authorization": f"Token {key}"}
        token = await drf_stream_token(bare, one.url, key, channel)
        async with (
            open_stream(bare, f"{one.url}/sse/?token={token}") as by_token,
            open_stream(bare, f"{two.url}/sse/?channel={channel}", headers=header) as by_header,
            open_stream(page, f"{one.url}/sse/?channel={channel}") as session_one,
            open_stream(page, f"{two.url}/sse/?channel={channel}") as session_two,
        ):
            streams = (by_token, by_header, session_one, session_two)
            assert [s.response.status_code for s in streams] == [200] * 4
            # Past two session checks (every 2 s): the Token exists, so they stay open.
            for n in range(3):
                await publish(bare, one.url, channel, event="private", data={"n": n})
                for stream in streams:
                    [event] = await stream.collect(1, timeout=8.0)
                    assert (event.event, json.loads(event.data)) == ("private", {"n": n})
                if n < 2:
                    await asyncio.sleep(2.5)  # one check interval: time is what is tested
            r = await bare.get(f"{one.url}/test/drf-token/delete/", params={"username": name})
            r.raise_for_status()
            for stream in (by_token, by_header):
                assert await closed(stream) == {"reason": "revoked", "reconnect": False}
            # The same user's session streams are not the Token's.
            await publish(bare, two.url, channel, event="private", data={"n": "after"})
            for stream in (session_one, session_two):
                [event] = await stream.collect(1, timeout=8.0)
                assert (event.event, json.loads(event.data)) == ("private", {"n": "after"})


async def test_a_rest_framework_token_deleted_without_a_signal_ends_its_streams_at_the_check(
    server: Server, server_db: str, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    page, bare = clients
    key, pk = await drf_key(page, server.url, unique("drfsql"))
    header = {"Authorization": f"Token {key}"}
    token = await drf_stream_token(bare, server.url, key, f"user:{pk}")
    async with (
        open_stream(bare, f"{server.url}/sse/?token={token}") as by_token,
        open_stream(page, f"{server.url}/sse/?channel=user:{pk}", headers=header) as by_header,
    ):
        with sqlite3.connect(server_db) as db:  # raw SQL: no post_delete
            db.execute("DELETE FROM authtoken_token WHERE key = ?", (key,))
        for stream in (by_token, by_header):
            assert await closed(stream) == {"reason": "revoked", "reconnect": False}
