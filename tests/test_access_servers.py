"""Access control against real daphne and uvicorn processes, on both doors:
DRF authentication, stream tokens, CORS, revocation, session expiry, limits."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.servers import ROOT, Server, base_env, memory_server
from tests.sse_client import Stream, login, open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server

ALLOWED_ORIGIN = "https://app.example.test"  # tests/settings.py


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as c:
        yield c


async def account(client: httpx.AsyncClient, server: Server, username: str, **params: str) -> dict:
    response = await client.get(
        f"{server.url}/test/account/", params={"username": username, **params}
    )
    response.raise_for_status()
    return dict(response.json())


async def drf_user(client: httpx.AsyncClient, server: Server) -> tuple[int, str]:
    """A logged-in user's pk and DRF token key."""
    name = unique("drf")
    pk = await login(client, server.url, name)
    return pk, str((await account(client, server, name))["token"])


async def stream_token(
    client: httpx.AsyncClient, server: Server, *channels: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST to the token endpoint as a page would: with the CSRF cookie and header."""
    csrf = (await client.get(f"{server.url}/test/csrf/")).json()["csrftoken"]
    return await client.post(
        f"{server.url}/sse/token/",
        data={"channel": list(channels)},
        headers={"X-CSRFToken": csrf, "Referer": server.url + "/", **(headers or {})},
    )


async def status_and_body(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 200:
            return 200, ""
        return response.status_code, (await response.aread()).decode()


async def closing_event(stream: Stream, timeout: float = 10.0) -> dict:
    """The data of the next ``stream-closed`` event, within ``timeout``."""
    [event] = await stream.collect(1, name="stream-closed", timeout=timeout)
    return dict(json.loads(event.data))


# -- 1. DRF authentication ------------------------------------------------------


async def test_drf_token_header_authenticates_the_stream(
    server: Server, client: httpx.AsyncClient
) -> None:
    pk, key = await drf_user(client, server)
    async with httpx.AsyncClient(timeout=15.0) as bare:  # no session cookie
        url = f"{server.url}/sse/?channel=user:{pk}"
        assert (await status_and_body(bare, url))[0] == 403
        headers = {"Authorization": f"Token {key}"}
        async with open_stream(bare, url, headers=headers) as stream:
            assert stream.response.status_code == 200
            await publish(client, server.url, f"user:{pk}", data={"private": True})
            [event] = await stream.collect(1)
        assert json.loads(event.data) == {"private": True}
        # The channel checks are the same as for the session: not another user's channel.
        other = f"{server.url}/sse/?channel=user:{pk + 1000}"
        assert (await status_and_body(bare, other, headers))[0] == 403
        bad = await status_and_body(bare, url, {"Authorization": "Token nope"})
        assert bad[0] == 403 and "authentication failed" in bad[1]


# -- 2. stream tokens --------------------------------------------------------------


async def test_stream_token_starts_one_stream_once(
    server: Server, client: httpx.AsyncClient
) -> None:
    pk = await login(client, server.url, unique("tok"))
    channel = f"user:{pk}"
    response = await stream_token(client, server, channel, "public")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "expires"}
    token = body["token"]
    async with httpx.AsyncClient(timeout=15.0) as bare:  # cookie-less, like a native client
        url = f"{server.url}/sse/?channel={channel}&token={token}"
        async with open_stream(bare, url) as stream:
            assert stream.response.status_code == 200
            await publish(client, server.url, channel, data="for you")
            [event] = await stream.collect(1)
            assert event.data == "for you"
        status, reason = await status_and_body(bare, url)
        assert (status, reason.strip()) == (403, "stream token already used: request a new one")
    if server.kind == "uvicorn":
        # daphne's own access log writes raw URLs (docs: Security); ours never does.
        assert token not in server.output()


async def test_stream_token_refusals_say_why(server: Server, client: httpx.AsyncClient) -> None:
    pk = await login(client, server.url, unique("tok"))
    token = (await stream_token(client, server, f"user:{pk}")).json()["token"]
    base = f"{server.url}/sse/?channel="
    async with httpx.AsyncClient(timeout=15.0) as bare:
        wrong = await status_and_body(bare, f"{base}public&token={token}")
        assert wrong == (403, "stream token is not valid for channel 'public'\n")
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        bad = await status_and_body(bare, f"{base}user:{pk}&token={tampered}")
        assert bad[0] == 403 and "invalid stream token" in bad[1]
        other = await status_and_body(bare, f"{base}user:{pk + 1000}&token={token}")
        assert other[0] == 403 and "not valid for channel" in other[1]
        # Still unused after the refusals: the owner's channel works.
        async with open_stream(bare, f"{base}user:{pk}&token={token}") as stream:
            assert stream.response.status_code == 200


async def test_token_endpoint_enforces_csrf_and_authentication(
    server: Server, client: httpx.AsyncClient
) -> None:
    anonymous = await stream_token(client, server, "public")
    assert anonymous.status_code == 403 and "authenticated users" in anonymous.text
    await login(client, server.url, unique("csrf"))
    no_csrf = await client.post(f"{server.url}/sse/token/", data={"channel": "public"})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    assert (await client.get(f"{server.url}/sse/token/?channel=public")).status_code == 405
    refused = await stream_token(client, server, "staff")
    assert refused.status_code == 403
    assert (await stream_token(client, server, "bad name")).status_code == 400


async def test_token_endpoint_takes_drf_credentials_without_csrf(
    server: Server, client: httpx.AsyncClient
) -> None:
    pk, key = await drf_user(client, server)
    async with httpx.AsyncClient(timeout=15.0) as bare:
        response = await bare.post(
            f"{server.url}/sse/token/",
            data={"channel": f"user:{pk}"},
            headers={"Authorization": f"Token {key}"},
        )
    assert response.status_code == 200 and response.json()["token"]


# -- 5. CORS -----------------------------------------------------------------------


async def test_cors_allowlist_and_preflight(server: Server, client: httpx.AsyncClient) -> None:
    url = f"{server.url}/sse/?channel=public"
    async with open_stream(client, url, headers={"Origin": ALLOWED_ORIGIN}) as stream:
        headers = stream.response.headers
        assert stream.response.status_code == 200
        assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert headers["access-control-allow-credentials"] == "true"
        assert "origin" in headers["vary"].lower()
    foreign = await status_and_body(client, url, {"Origin": "https://evil.example"})
    assert foreign[0] == 403 and "may not open streams" in foreign[1]
    null = await status_and_body(client, url, {"Origin": "null"})
    assert null[0] == 403
    # Same origin (the server's own): allowed without any CORS header.
    async with open_stream(client, url, headers={"Origin": server.url}) as stream:
        assert stream.response.status_code == 200
        assert "access-control-allow-origin" not in stream.response.headers

    preflight = await client.options(
        url,
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Last-Event-ID" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["access-control-allow-methods"] == "GET"
    evil = await client.options(
        url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    # Errors to an allowed origin carry CORS headers, so its page can read why.
    async with client.stream(
        "GET", f"{server.url}/sse/?channel=staff", headers={"Origin": ALLOWED_ORIGIN}
    ) as r:
        assert r.status_code == 403
        assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


# -- 3. revocation -----------------------------------------------------------------


async def test_logout_closes_that_sessions_streams(
    server: Server, client: httpx.AsyncClient
) -> None:
    name = unique("out")
    pk = await login(client, server.url, name)
    async with httpx.AsyncClient(timeout=15.0) as other_session:
        await login(other_session, server.url, name)
        async with (
            open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as mine,
            open_stream(other_session, f"{server.url}/sse/?channel=user:{pk}") as theirs,
        ):
            (await client.get(f"{server.url}/test/logout/")).raise_for_status()
            assert await closing_event(mine) == {"reason": "revoked", "reconnect": False}
            # The user's other session stays open and live.
            await publish(client, server.url, f"user:{pk}", data="still here")
            [event] = await theirs.collect(1)
            assert event.data == "still here"
        status = await status_and_body(client, f"{server.url}/sse/?channel=user:{pk}")
        assert status[0] == 403


async def test_deactivation_and_revoke_close_streams(
    server: Server, client: httpx.AsyncClient
) -> None:
    name = unique("rev")
    pk = await login(client, server.url, name)
    async with (
        open_stream(client, f"{server.url}/sse/?channel=members&channel=public") as both,
        open_stream(client, f"{server.url}/sse/?channel=public") as public,
    ):
        await account(client, server, name, revoke="members")
        assert (await closing_event(both))["reason"] == "revoked"
        await publish(client, server.url, "public", data="public stays")
        assert (await public.collect(1))[0].data == "public stays"
    async with open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as stream:
        await account(client, server, name, active="0")
        assert await closing_event(stream) == {"reason": "revoked", "reconnect": False}
    assert (await status_and_body(client, f"{server.url}/sse/?channel=user:{pk}"))[0] == 403


async def test_stream_closes_when_its_session_expires(
    server: Server, client: httpx.AsyncClient
) -> None:
    pk = await login(client, server.url, unique("exp"), expiry="2")
    loop = asyncio.get_running_loop()
    async with open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as stream:
        opened = loop.time()
        assert (await closing_event(stream, timeout=8))["reason"] == "session expired"
        assert 1.0 <= loop.time() - opened <= 5.0
    await wait_until(lambda: _forbidden(client, f"{server.url}/sse/?channel=user:{pk}"), timeout=5)


async def _forbidden(client: httpx.AsyncClient, url: str) -> bool:
    return (await status_and_body(client, url))[0] == 403


def revoke_from_another_process(redis_url: str, db: str, pk: int) -> None:
    code = f"import django; django.setup(); from django_sse import revoke; revoke({pk})"
    env = base_env(SSE_TEST_LAYER="redis", REDIS_URL=redis_url, SSE_TEST_DB=db)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


@pytest.mark.redis
async def test_revocation_reaches_every_process(
    redis_servers: tuple[Server, Server], redis_url: str, server_db: str, client: httpx.AsyncClient
) -> None:
    one, two = redis_servers
    pk = await login(client, one.url, unique("x"))  # the session is in the shared database
    channel = f"user:{pk}"
    async with (
        open_stream(client, f"{one.url}/sse/?channel={channel}") as s1,
        open_stream(client, f"{two.url}/sse/?channel={channel}") as s2,
    ):
        assert s1.response.status_code == s2.response.status_code == 200
        await asyncio.to_thread(revoke_from_another_process, redis_url, server_db, pk)
        for stream in (s1, s2):
            assert await closing_event(stream, timeout=5) == {
                "reason": "revoked",
                "reconnect": False,
            }
    # Logging out on one process closes that session's stream on the other.
    async with open_stream(client, f"{two.url}/sse/?channel={channel}") as s2:
        (await client.get(f"{one.url}/test/logout/")).raise_for_status()
        assert (await closing_event(s2, timeout=5))["reason"] == "revoked"


# -- 4. limits ---------------------------------------------------------------------

LIMITED = [("uvicorn", "fast"), ("daphne", "view")]


@pytest.fixture(scope="module", params=LIMITED, ids=["-".join(p) for p in LIMITED])
def limited_server(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    kind, door = request.param
    limits = {"SSE_MAX_STREAMS_PER_USER": "2", "SSE_MAX_STREAM_AGE": "2"}
    with memory_server(kind, door, server_db, **limits) as srv:
        yield srv


async def test_streams_per_user_limit_is_429_with_a_reason(
    limited_server: Server, client: httpx.AsyncClient
) -> None:
    server = limited_server
    await login(client, server.url, unique("lim"))
    url = f"{server.url}/sse/?channel=members"
    async with open_stream(client, url) as a, open_stream(client, url) as b:
        assert a.response.status_code == b.response.status_code == 200
        status, reason = await status_and_body(client, url)
        assert status == 429 and "SSE_MAX_STREAMS_PER_USER" in reason and "at most 2" in reason
        async with httpx.AsyncClient(timeout=15.0) as someone_else:
            await login(someone_else, server.url, unique("lim"))
            async with open_stream(someone_else, url) as c:
                assert c.response.status_code == 200
    # Closed streams give their slots back.
    await wait_until(lambda: _opens(client, url), timeout=5)


async def _opens(client: httpx.AsyncClient, url: str) -> bool:
    return (await status_and_body(client, url))[0] == 200


async def test_max_stream_age_closes_and_the_client_resumes_without_loss(
    limited_server: Server, client: httpx.AsyncClient
) -> None:
    server = limited_server
    channel = f"news:{unique()}"
    url = f"{server.url}/sse/?channel={channel}"
    loop = asyncio.get_running_loop()
    async with open_stream(client, url) as stream:
        opened = loop.time()
        await publish(client, server.url, channel, count=3)
        got = await stream.collect(3)
        closing = await stream.collect(1, name="stream-closed", timeout=6)
        lived = loop.time() - opened
    assert json.loads(closing[0].data) == {"reason": "max age", "reconnect": True}
    assert 1.5 <= lived <= 4.0  # SSE_MAX_STREAM_AGE=2 with up to 10% jitter, 1 s ticks
    last_id = closing[0].id or got[-1].id
    await publish(client, server.url, channel, count=2, data={"later": True})
    async with open_stream(client, url, headers={"Last-Event-ID": last_id}) as again:
        resumed = await again.collect(2)
    assert [json.loads(e.data) for e in resumed] == [{"later": True}] * 2
    assert not any(e.event == "stream-reset" for e in again.events)


async def test_uvicorn_access_log_redacts_stream_tokens(
    server_db: str, client: httpx.AsyncClient
) -> None:
    with memory_server("uvicorn", "fast", server_db, SSE_TEST_ACCESS_LOG="1") as server:
        pk = await login(client, server.url, unique("log"))
        token = (await stream_token(client, server, f"user:{pk}")).json()["token"]
        url = f"{server.url}/sse/?channel=user:{pk}&token={token}"
        async with open_stream(client, url) as stream:
            assert stream.response.status_code == 200
        assert (await status_and_body(client, url))[0] == 403  # used: logged too
        await wait_until(lambda: server.output().count("token=[redacted]") >= 2, timeout=5)
        assert token not in server.output()
        assert token.split(":")[0] not in server.output()
