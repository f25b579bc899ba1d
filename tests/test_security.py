"""User A against user B's events, fuzzing and floods, against real server
processes on both doors. Nothing here may ever see another user's data or a 500."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import Server
from tests.sse_client import login, open_stream, publish, unique

pytestmark = pytest.mark.server

REFUSALS = {400, 403, 404, 429}
SECRET = "b-only-secret"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as c:
        yield c


async def status_of(client: httpx.AsyncClient, url: str, **headers: str) -> tuple[int, bytes]:
    async with client.stream("GET", url, headers=headers) as response:
        body = b"" if response.status_code == 200 else await response.aread()
        return response.status_code, body


async def token_for(client: httpx.AsyncClient, server: Server, *channels: str) -> str:
    csrf = (await client.get(f"{server.url}/test/csrf/")).json()["csrftoken"]
    response = await client.post(
        f"{server.url}/sse/token/",
        data={"channel": list(channels)},
        headers={"X-CSRFToken": csrf, "Referer": server.url + "/"},
    )
    response.raise_for_status()
    return str(response.json()["token"])


async def test_a_never_reads_b_through_any_door(server: Server) -> None:
    async with (
        httpx.AsyncClient(timeout=15.0) as a,
        httpx.AsyncClient(timeout=15.0) as b,
        httpx.AsyncClient(timeout=15.0) as bare,
    ):
        a_pk = await login(a, server.url, unique("a"))
        b_pk = await login(b, server.url, unique("b"))
        b_channel = f"user:{b_pk}"
        sse = f"{server.url}/sse/?channel="
        # The user channel and a denied object channel, by session.
        assert (await status_of(a, sse + b_channel))[0] == 403
        assert (await status_of(a, sse + "ticket:3"))[0] == 403
        assert (await status_of(a, f"{sse}user:{a_pk}&channel={b_channel}"))[0] == 403
        # A's token for A's channel cannot open B's; A cannot get a token for B's.
        a_token = await token_for(a, server, f"user:{a_pk}")
        status, body = await status_of(bare, f"{sse}{b_channel}&token={a_token}")
        assert status == 403 and b"not valid for channel" in body
        csrf = (await a.get(f"{server.url}/test/csrf/")).json()["csrftoken"]
        denied = await a.post(
            f"{server.url}/sse/token/",
            data={"channel": b_channel},
            headers={"X-CSRFToken": csrf, "Referer": server.url + "/"},
        )
        assert denied.status_code == 403
        # B's history holds a secret; B's stream gives A a real resume id.
        async with open_stream(b, sse + b_channel) as b_stream:
            await publish(b, server.url, b_channel, count=2, data={"secret": SECRET})
            b_events = await b_stream.collect(2)
        b_first_id = b_events[0].id
        assert b_first_id
        # A resumes its own public stream from B's id: a reset, never B's events.
        for header in ({"Last-Event-ID": b_first_id}, {}):
            query = "" if header else f"&lastEventId={quote(b_first_id)}"
            async with open_stream(a, f"{sse}public{query}", headers=header) as a_stream:
                sentinel = unique("end")
                await publish(a, server.url, "public", data=sentinel)
                while (await a_stream.next_event()).data != sentinel:
                    pass
            seen = " ".join(e.data for e in a_stream.events)
            assert SECRET not in seen
            assert "stream-reset" in {e.event for e in a_stream.events}
        # A token-less, cookie-less request with B's resume id gets nothing either.
        status, body = await status_of(bare, sse + b_channel, **{"Last-Event-ID": b_first_id})
        assert status == 403 and SECRET.encode() not in body


channel_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120
) | st.from_regex(r"\A(user|ticket|room|news|staff|counter|typing):[A-Za-z0-9_.:-]{0,100}\Z")
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def log_mark(server: Server) -> int:
    """Where the server's log stood before this module fuzzed it."""
    return len(server.output())


def assert_refused_or_streaming(server: Server, response: httpx.Response) -> None:
    assert response.status_code in REFUSALS | {200}, (response.status_code, response.text)
    if response.status_code != 200:
        assert b"Traceback" not in response.content and response.content.strip()


def fetch(server: Server, client: httpx.Client, query: str, headers: dict[str, Any]) -> None:
    with client.stream("GET", f"{server.url}/sse/?{query}", headers=headers) as response:
        if response.status_code != 200:
            response.read()
        assert_refused_or_streaming(server, response)


@FUZZ
@given(names=st.lists(channel_names, min_size=0, max_size=12))
def test_fuzz_channel_names(server: Server, log_mark: int, names: list[str]) -> None:
    with httpx.Client(timeout=15.0) as client:
        query = "&".join(f"channel={quote(n, safe='')}" for n in names)
        fetch(server, client, query, {})


@FUZZ
@given(query=st.text(max_size=400))
def test_fuzz_query_strings(server: Server, log_mark: int, query: str) -> None:
    with httpx.Client(timeout=15.0) as client:
        # Raw, percent-encoded only where HTTP itself requires it.
        fetch(server, client, quote(query, safe="=&;:+,/?%"), {})


@FUZZ
@given(
    name=st.sampled_from(["Last-Event-ID", "Origin", "Authorization", "Cookie", "Accept"]),
    value=header_values,
    token=st.one_of(st.none(), header_values),
)
def test_fuzz_header_values(
    server: Server, log_mark: int, name: str, value: str, token: str | None
) -> None:
    query = "channel=public&channel=members"
    if token is not None:
        query += "&token=" + quote(token, safe="")
    with httpx.Client(timeout=15.0) as client:
        # As raw bytes: a header may carry any byte a client chooses to send.
        fetch(server, client, query, {name: value.strip().encode("latin-1")})


def test_fuzzing_left_no_traceback_in_the_server_log(server: Server, log_mark: int) -> None:
    # Runs after the fuzz tests of this module, on the same server processes.
    output = server.output()[log_mark:]
    assert (
        "Traceback" not in output
        and " 500 " not in output
        and "Internal Server Error" not in output
    )
    assert output.count(" 403 ") > 0 or server.kind == "uvicorn"  # daphne logged the fuzzing


async def test_anonymous_flood_is_refused_cheaply(server: Server) -> None:
    count = 300
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        started = time.monotonic()
        statuses = await asyncio.gather(
            *(status_of(client, f"{server.url}/sse/?channel=members") for _ in range(count))
        )
        elapsed = time.monotonic() - started
        assert {s for s, _ in statuses} == {403}
        stats = (await client.get(f"{server.url}/test/stats/?channel=members")).json()
        assert stats["subscribers"] == 0
        # Still serving: a legitimate stream opens right after the flood.
        async with open_stream(client, f"{server.url}/sse/?channel=public") as stream:
            assert stream.response.status_code == 200
    print(f"{server.kind}: {count} anonymous refusals in {elapsed:.2f}s")
    assert elapsed < 60


async def test_resume_id_shape_cannot_smuggle_other_channels(
    server: Server, client: httpx.AsyncClient
) -> None:
    b_pk = await login(client, server.url, unique("b"))
    await publish(client, server.url, f"user:{b_pk}", data={"secret": SECRET})
    async with httpx.AsyncClient(timeout=15.0) as a:
        await login(a, server.url, unique("a"))
        for forged in (f"user:{b_pk}", "0-0", "x" * 300, f"{b_pk}-1-1", "%ff" * 10, "~" * 127):
            async with open_stream(
                a, f"{server.url}/sse/?channel=public", headers={"Last-Event-ID": forged}
            ) as stream:
                sentinel = unique("end")
                await publish(a, server.url, "public", data=sentinel)
                while (await stream.next_event()).data != sentinel:
                    pass
            assert all(SECRET not in e.data for e in stream.events)
            assert json.dumps(SECRET) not in " ".join(e.data for e in stream.events)


async def test_a_host_outside_allowed_hosts_is_refused(server: Server) -> None:
    async with httpx.AsyncClient(timeout=15.0) as client:
        status, body = await status_of(
            client, f"{server.url}/sse/?channel=public", Host="evil.test"
        )
    assert status == 400
    if server.env["SSE_TEST_DOOR"] == "fast":
        # The view's 400 is Django's (CommonMiddleware); the fast path says why itself.
        assert body == b"invalid Host header (ALLOWED_HOSTS)\n"
