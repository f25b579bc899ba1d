"""Authentication, tokens, revocation, limits and CORS against real server processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.servers import Server, running_server
from tests.sse_client import login, open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0) as c:
        yield c


async def drf_key(client: httpx.AsyncClient, base: str, username: str) -> tuple[str, int]:
    response = await client.get(f"{base}/test/drf-token/", params={"username": username})
    response.raise_for_status()
    return response.json()["key"], int(response.json()["pk"])


async def get_token(client: httpx.AsyncClient, base: str, *channels: str) -> httpx.Response:
    """POST to the token endpoint the way a page does: CSRF cookie and header."""
    csrf = client.cookies.get("csrftoken") or "x" * 32
    client.cookies.set("csrftoken", csrf, domain="127.0.0.1")
    return await client.post(
        f"{base}/sse/token/",
        data={"channel": list(channels)},
        headers={"X-CSRFToken": csrf, "Referer": base + "/", "Origin": base},
    )


async def status_of(client: httpx.AsyncClient, url: str, **kwargs: object) -> tuple[int, str]:
    async with client.stream("GET", url, **kwargs) as response:  # type: ignore[arg-type]
        if response.status_code == 200:
            return 200, ""
        return response.status_code, (await response.aread()).decode()


# -- REST framework authentication ----------------------------------------


async def test_drf_token_header_authenticates_the_stream(
    server: Server, client: httpx.AsyncClient
) -> None:
    key, pk = await drf_key(client, server.url, unique("drf"))
    auth = {"Authorization": f"Token {key}"}
    async with open_stream(client, f"{server.url}/sse/?channel=user:{pk}", headers=auth) as s:
        await publish(client, server.url, f"user:{pk}", event="note", data={"m": 1})
        [event] = await s.collect(1)
    assert event.event == "note"
    # Same channel checks as for a session: another user's channel is refused.
    assert (await status_of(client, f"{server.url}/sse/?channel=user:{pk + 1}", headers=auth))[
        0
    ] == 403
    assert (await status_of(client, f"{server.url}/sse/?channel=staff", headers=auth))[0] == 403


async def test_bad_drf_token_is_a_403_with_a_reason(
    server: Server, client: httpx.AsyncClient
) -> None:
    status, body = await status_of(
        client, f"{server.url}/sse/?channel=public", headers={"Authorization": "Token nope"}
    )
    assert status == 403 and "authentication failed" in body


# -- stream tokens -----------------------------------------------------------


async def test_token_flow_and_every_refusal(server: Server, client: httpx.AsyncClient) -> None:
    pk = await login(client, server.url, unique("tok"))
    response = await get_token(client, server.url, f"user:{pk}", "ticket:2")
    assert response.status_code == 200, response.text
    body = response.json()
    token, expires = body["token"], body["expires"]
    assert expires.endswith("+00:00")
    # A client with no cookie at all (another origin, a native client).
    async with httpx.AsyncClient(timeout=15.0) as bare:
        url = f"{server.url}/sse/?channel=user:{pk}&token={token}"
        async with open_stream(bare, url) as stream:
            assert stream.response.status_code == 200
            await publish(bare, server.url, f"user:{pk}", event="private", data={"p": 1})
            [event] = await stream.collect(1)
            assert event.event == "private"
        assert await status_of(bare, url) == (
            403,
            "token already used: request a new one for each stream\n",
        )

        fresh = (await get_token(client, server.url, "ticket:2")).json()["token"]
        status, reason = await status_of(bare, f"{server.url}/sse/?channel=ticket:4&token={fresh}")
        assert status == 403 and "not valid for channel 'ticket:4'" in reason
        tampered = fresh[:-3] + ("AAA" if not fresh.endswith("AAA") else "BBB")
        status, reason = await status_of(
            bare, f"{server.url}/sse/?channel=ticket:2&token={tampered}"
        )
        assert status == 403 and "invalid token" in reason
        # No channel given: the token's own channels.
        async with open_stream(bare, f"{server.url}/sse/?token={fresh}") as stream:
            assert stream.response.status_code == 200
    if server.kind == "uvicorn":  # daphne writes its own access log; see the docs
        assert token not in server.output()


async def test_token_endpoint_enforces_csrf_for_session_users(
    server: Server, client: httpx.AsyncClient
) -> None:
    await login(client, server.url, unique("csrf"))
    response = await client.post(f"{server.url}/sse/token/", data={"channel": "members"})
    assert response.status_code == 403
    assert "CSRF" in response.text
    assert (await get_token(client, server.url, "members")).status_code == 200


async def test_token_endpoint_refuses_anonymous_and_unreadable_channels(
    server: Server, client: httpx.AsyncClient
) -> None:
    response = await get_token(client, server.url, "public")
    assert response.status_code == 403 and "anonymous" in response.text
    await login(client, server.url, unique("nope"))
    assert (await get_token(client, server.url, "staff")).status_code == 403
    assert (await get_token(client, server.url, "nowhere")).status_code == 404
    assert (await get_token(client, server.url, "bad name")).status_code == 400
    assert (await client.get(f"{server.url}/sse/token/")).status_code == 405


async def test_drf_client_gets_a_token_without_csrf(
    server: Server, client: httpx.AsyncClient
) -> None:
    key, pk = await drf_key(client, server.url, unique("drft"))
    response = await client.post(
        f"{server.url}/sse/token/",
        data={"channel": f"user:{pk}"},
        headers={"Authorization": f"Token {key}"},
    )
    assert response.status_code == 200, response.text


async def test_token_of_another_user_is_refused_to_a_logged_in_reader(
    server: Server, client: httpx.AsyncClient
) -> None:
    b_pk = await login(client, server.url, unique("b"))
    token = (await get_token(client, server.url, f"user:{b_pk}")).json()["token"]
    async with httpx.AsyncClient(timeout=15.0) as a:
        await login(a, server.url, unique("a"))
        status, reason = await status_of(a, f"{server.url}/sse/?token={token}")
    assert status == 403 and "another user" in reason


# -- revocation ----------------------------------------------------------------


async def closed_event(stream: object) -> dict[str, object]:
    [event] = await stream.collect(1, name="stream-closed")  # type: ignore[attr-defined]
    return json.loads(event.data)  # type: ignore[no-any-return]


async def test_logout_closes_the_sessions_streams(
    server: Server, client: httpx.AsyncClient
) -> None:
    pk = await login(client, server.url, unique("out"))
    async with open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as stream:
        (await client.get(f"{server.url}/test/logout/")).raise_for_status()
        assert await closed_event(stream) == {"reason": "revoked", "reconnect": False}


async def test_deactivation_closes_token_and_drf_streams(
    server: Server, client: httpx.AsyncClient
) -> None:
    name = unique("deact")
    key, pk = await drf_key(client, server.url, name)
    url = f"{server.url}/sse/?channel=user:{pk}"
    async with open_stream(client, url, headers={"Authorization": f"Token {key}"}) as stream:
        (
            await client.get(f"{server.url}/test/deactivate/", params={"username": name})
        ).raise_for_status()
        assert (await closed_event(stream))["reason"] == "revoked"
    assert (await status_of(client, url, headers={"Authorization": f"Token {key}"}))[0] == 403


async def test_revoke_one_channel_leaves_the_others_open(
    server: Server, client: httpx.AsyncClient
) -> None:
    name = unique("rev")
    pk = await login(client, server.url, name)
    async with (
        open_stream(client, f"{server.url}/sse/?channel=members") as members,
        open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as own,
    ):
        await client.get(
            f"{server.url}/test/revoke/", params={"username": name, "channel": "members"}
        )
        assert (await closed_event(members))["reason"] == "revoked"
        await publish(client, server.url, f"user:{pk}", event="still", data=1)
        [event] = await own.collect(1)
        assert event.event == "still"


@pytest.mark.redis
async def test_revocation_reaches_the_other_process(
    redis_servers: tuple[Server, Server], client: httpx.AsyncClient
) -> None:
    one, two = redis_servers
    name = unique("x")
    key, pk = await drf_key(client, one.url, name)
    auth = {"Authorization": f"Token {key}"}
    async with open_stream(client, f"{two.url}/sse/?channel=user:{pk}", headers=auth) as stream:
        (await client.get(f"{one.url}/test/revoke/", params={"username": name})).raise_for_status()
        assert await asyncio.wait_for(closed_event(stream), 5) == {
            "reason": "revoked",
            "reconnect": False,
        }


@pytest.mark.parametrize("kind", ["uvicorn"])
async def test_stream_closes_when_its_session_expires(
    kind: str, server_db: str, client: httpx.AsyncClient
) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SESSION_COOKIE_AGE": "2"}
    with running_server(kind, **env) as srv:
        pk = await login(client, srv.url, unique("exp"))
        async with open_stream(client, f"{srv.url}/sse/?channel=user:{pk}") as stream:
            data = await asyncio.wait_for(closed_event(stream), 6)
        assert data == {"reason": "session expired", "reconnect": True}
        assert (await status_of(client, f"{srv.url}/sse/?channel=user:{pk}"))[0] == 403


# -- limits ----------------------------------------------------------------------


async def test_max_streams_per_user_is_a_429(server_db: str, client: httpx.AsyncClient) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_MAX_STREAMS_PER_USER": "2"}
    with running_server("uvicorn", **env) as srv:
        pk = await login(client, srv.url, unique("lim"))
        url = f"{srv.url}/sse/?channel=user:{pk}"
        async with open_stream(client, url), open_stream(client, url):
            status, reason = await status_of(client, url)
            assert status == 429 and "SSE_MAX_STREAMS_PER_USER" in reason
        # Closed streams give their slots back.

        async def opens() -> bool:
            return (await status_of(client, url))[0] == 200

        await wait_until(opens, timeout=5)


COUNT = 16


async def test_max_stream_age_rotates_without_losing_events(
    server_db: str, client: httpx.AsyncClient
) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_MAX_STREAM_AGE": "1"}
    channel = f"news:{unique()}"
    with running_server("daphne", **env) as srv:
        received: list[int] = []
        closes = 0
        last_id: str | None = None

        async def publisher() -> None:
            for n in range(COUNT):
                await publish(client, srv.url, channel, data={"n": n})
                if n % 4 == 3 and n < COUNT - 1:
                    # Spread the events over several stream lifetimes.
                    await wait_until(lambda n=n: closes > n // 4, timeout=20)  # type: ignore[misc]

        task = asyncio.create_task(publisher())
        while len(received) < COUNT:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            async with open_stream(
                client, f"{srv.url}/sse/?channel={channel}", headers=headers
            ) as s:
                while True:
                    event = await s.next_event(10)
                    if event.event == "stream-closed":
                        assert json.loads(event.data) == {"reason": "max age", "reconnect": True}
                        closes += 1
                        break
                    if event.event == "message" and event.data:
                        received.append(json.loads(event.data)["n"])
                        last_id = event.id
                        if len(received) == COUNT:
                            break
        await task
    assert received == list(range(COUNT))
    assert closes >= 3


# -- CORS --------------------------------------------------------------------------


async def test_cors_allowlist_and_preflight(server: Server, client: httpx.AsyncClient) -> None:
    allowed = "http://allowed.example"
    async with client.stream(
        "GET", f"{server.url}/sse/?channel=public", headers={"Origin": allowed}
    ) as response:
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == allowed
        assert response.headers["access-control-allow-credentials"] == "true"
    status, reason = await status_of(
        client, f"{server.url}/sse/?channel=public", headers={"Origin": "http://evil.example"}
    )
    assert status == 403 and "origin" in reason
    # A refusal for an allowed origin carries the CORS headers on both doors,
    # so the page can read why.
    refused = await client.get(f"{server.url}/sse/?channel=staff", headers={"Origin": allowed})
    assert refused.status_code == 403
    assert refused.headers["access-control-allow-origin"] == allowed
    assert refused.headers["vary"] == "Origin"
    # Referer is never taken for an origin.
    async with client.stream(
        "GET", f"{server.url}/sse/?channel=public", headers={"Referer": allowed + "/"}
    ) as response:
        assert "access-control-allow-origin" not in response.headers

    preflight = {
        "Origin": allowed,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id",
    }
    response = await client.options(f"{server.url}/sse/?channel=public", headers=preflight)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == allowed
    assert "last-event-id" in response.headers["access-control-allow-headers"]
    assert response.headers["access-control-allow-origin"] != "*"
    evil = {**preflight, "Origin": "http://evil.example"}
    assert (await client.options(f"{server.url}/sse/", headers=evil)).status_code == 403


async def test_uvicorn_access_log_keeps_its_lines_and_loses_the_tokens(
    server_db: str, client: httpx.AsyncClient
) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_TEST_ACCESS_LOG": "1"}
    with running_server("uvicorn", **env) as srv:
        pk = await login(client, srv.url, unique("log"))
        token = (await get_token(client, srv.url, f"user:{pk}")).json()["token"]
        url = f"{srv.url}/sse/?channel=user:{pk}&token={token}"
        async with open_stream(client, url) as stream:
            assert stream.response.status_code == 200
        assert (await status_of(client, url))[0] == 403  # used: its line is logged too

        def logged() -> bool:
            return srv.output().count(f"/sse/?channel=user:{pk}&token=[redacted]") >= 2

        await wait_until(logged, timeout=5)
        assert token not in srv.output() and "Logging error" not in srv.output()


async def test_stream_closes_at_the_expiry_stored_with_the_session(
    server: Server, server_db: str, client: httpx.AsyncClient
) -> None:
    # A session saved long ago, near the end of its SESSION_COOKIE_AGE: the
    # row's expire_date, not the age counted from now, decides.
    pk = await login(client, server.url, unique("row"))
    key = client.cookies["sessionid"]
    soon = datetime.now(UTC) + timedelta(seconds=2)
    with sqlite3.connect(server_db) as db:
        db.execute(
            "UPDATE django_session SET expire_date = ? WHERE session_key = ?",
            (soon.strftime("%Y-%m-%d %H:%M:%S.%f"), key),
        )
    async with open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as stream:
        data = await asyncio.wait_for(closed_event(stream), 8)
    assert data == {"reason": "session expired", "reconnect": True}
