"""Attacks against a real server process: every door to another user's events.

User A tries to read user B's events through the user channel, an object
channel, B's token, a token for other channels, a resume id from a channel A
is not subscribed to, and the replay of history; fuzzed channel names, query
strings and header values never make the server fail; an anonymous flood is
refused before anything is subscribed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import Server
from tests.sse_client import login, open_stream, publish, unique
from tests.test_access_servers import get_token, status_of

pytestmark = pytest.mark.server

REFUSALS = {400, 403, 404, 429}
Pair = tuple[httpx.AsyncClient, int, httpx.AsyncClient, int]


@pytest.fixture
async def pair(
    server: Server,
) -> AsyncIterator[Pair]:
    """Two logged-in users, A and B, each with a client of their own."""
    async with httpx.AsyncClient(timeout=15.0) as a, httpx.AsyncClient(timeout=15.0) as b:
        a_pk = await login(a, server.url, unique("a"))
        b_pk = await login(b, server.url, unique("b"))
        yield a, a_pk, b, b_pk


async def test_a_cannot_open_b_channels(server: Server, pair: Pair) -> None:
    a, a_pk, _, b_pk = pair
    for query in (
        f"channel=user:{b_pk}",
        f"channel=user:{a_pk}&channel=user:{b_pk}",  # one forbidden channel refuses all
        "channel=ticket:3",  # an object channel nobody may read
        f"channel=user:{b_pk}&lastEventId=0",  # replay of history is behind the same check
        f"channel=USER:{b_pk}",
        f"channel=user:{b_pk}.",
        f"channel=user:0{b_pk}",
    ):
        status, reason = await status_of(a, f"{server.url}/sse/?{query}")
        assert status in {403, 404}, (query, status, reason)
    stats = (await a.get(f"{server.url}/test/stats/", params={"channel": f"user:{b_pk}"})).json()
    assert stats["subscribers"] == 0


async def test_tokens_do_not_open_other_doors(server: Server, pair: Pair) -> None:
    a, a_pk, b, b_pk = pair
    b_token = (await get_token(b, server.url, f"user:{b_pk}")).json()["token"]
    # B's token, presented by A's logged-in browser.
    status, reason = await status_of(a, f"{server.url}/sse/?token={b_token}")
    assert (status, "another user" in reason) == (403, True)
    # A's own token cannot be stretched to B's channel, nor can A ask for one.
    a_token = (await get_token(a, server.url, f"user:{a_pk}")).json()["token"]
    async with httpx.AsyncClient(timeout=15.0) as bare:
        status, reason = await status_of(
            bare, f"{server.url}/sse/?channel=user:{b_pk}&token={a_token}"
        )
        assert status == 403 and "not valid for channel" in reason
        # A token whose payload names B, re-signed by nobody: the signature fails.
        head, _, sig = a_token.partition(":")
        status, reason = await status_of(bare, f"{server.url}/sse/?token={head[::-1]}:{sig}")
        assert status == 403 and "invalid token" in reason
    assert (await get_token(a, server.url, f"user:{b_pk}")).status_code == 403


async def test_a_resume_id_from_b_stream_replays_nothing_of_b(
    server: Server,
    pair: Pair,
) -> None:
    a, a_pk, b, b_pk = pair
    secret = {"secret": unique("s")}
    async with open_stream(b, f"{server.url}/sse/?channel=user:{b_pk}") as stream:
        await publish(b, server.url, f"user:{b_pk}", event="private", data=secret)
        [event] = await stream.collect(1)
    b_id = event.id
    assert b_id
    async with open_stream(
        a, f"{server.url}/sse/?channel=user:{a_pk}", headers={"Last-Event-ID": b_id}
    ) as stream:
        [reset] = await stream.collect(1)
        await publish(a, server.url, f"user:{a_pk}", event="mine", data=1)
        [mine] = await stream.collect(1, name="mine")
    assert (
        reset.event == "stream-reset"
        and json.loads(reset.data)["reason"] == "unknown last event id"
    )
    assert all(secret["secret"] not in e.data for e in stream.events)
    assert mine.data == "1"


async def test_anonymous_flood_is_refused_cheaply(server: Server) -> None:
    count = 300
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=50)) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(client.get(f"{server.url}/sse/?channel=members") for _ in range(count))
        )
        elapsed = time.monotonic() - started
        stats = (await client.get(f"{server.url}/test/stats/")).json()
    assert {r.status_code for r in responses} == {403}
    assert all(r.text.startswith("anonymous users are not allowed") for r in responses)
    print(f"{count} anonymous refusals in {elapsed:.2f}s ({elapsed / count * 1000:.1f} ms each)")
    assert stats.get("streams", 0) == 0  # no hub at all if nothing ever streamed
    assert elapsed < 60  # bounded, generous for a shared 2-core machine


# -- fuzzing -------------------------------------------------------------------

# Header values an HTTP client can send: visible Latin-1 and spaces, no CR/LF.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
    max_size=300,
)
channel_text = st.one_of(
    st.text(max_size=120),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,105}", fullmatch=True),
    st.sampled_from(["user:1", "user:", "ticket:x", "room:open", "staff", "news:", "typing:a"]),
)


@pytest.fixture(scope="module")
def sync_client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=15.0) as c:
        yield c


def _assert_no_failure(response: httpx.Response) -> None:
    assert response.status_code in REFUSALS | {200}, (response.status_code, response.text)
    if response.status_code != 200:
        assert "Traceback" not in response.text


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    channels=st.lists(channel_text, max_size=12),
    extra=st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=4),
)
def test_fuzzed_query_strings(
    sync_client: httpx.Client, channels: list[str], extra: dict[str, str]
) -> None:
    pairs = [("channel", c) for c in channels] + list(extra.items())
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    with sync_client.stream("GET", f"/sse/?{query}") as response:
        if response.status_code != 200:
            response.read()
            _assert_no_failure(response)
        assert response.status_code in REFUSALS | {200}


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    channel=channel_text,
    last_event_id=header_text,
    authorization=header_text,
    origin=header_text,
    token=header_text,
    cookie=st.one_of(header_text, header_text.map(lambda v: f"sessionid={v}")),
    host=st.one_of(st.none(), header_text),
)
def test_fuzzed_headers_and_tokens(
    sync_client: httpx.Client,
    channel: str,
    last_event_id: str,
    authorization: str,
    origin: str,
    token: str,
    cookie: str,
    host: str | None,
) -> None:
    headers = {
        "Last-Event-ID": last_event_id,
        "Origin": origin,
        "Authorization": authorization,
        "Cookie": cookie,
        **({"Host": host} if host is not None else {}),
    }
    # Latin-1 bytes, as they reach the wire (non-ASCII included).
    raw = {k: v.strip().encode("latin-1") for k, v in headers.items() if v.strip()}
    params = {"channel": channel, "token": token} if token else {"channel": channel}
    with sync_client.stream("GET", "/sse/", params=params, headers=raw) as response:
        if response.status_code != 200:
            response.read()
            _assert_no_failure(response)
        assert response.status_code in REFUSALS | {200}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200))
def test_fuzzed_raw_query_bytes(sync_client: httpx.Client, raw: bytes) -> None:
    query = quote(raw, safe="=&%")
    with sync_client.stream("GET", f"/sse/?{query}") as response:
        if response.status_code != 200:
            response.read()
            _assert_no_failure(response)
        assert response.status_code in REFUSALS | {200}


def test_the_fuzzed_server_logged_no_traceback(server: Server) -> None:
    # Runs after the fuzzing tests of this module (same server process). Django
    # itself logs a bad Host header with its traceback (and answers 400): that
    # is its security log, not a failure.
    output = server.output()
    for chunk in output.split("Traceback (most recent call last):")[1:]:
        error = next(line for line in chunk.splitlines() if line and not line.startswith(" "))
        assert error.startswith("django.core.exceptions.DisallowedHost"), chunk[:4000]
    assert '" 500 ' not in output


async def test_a_host_outside_allowed_hosts_is_a_400_on_both_doors(server: Server) -> None:
    async with httpx.AsyncClient(timeout=15.0) as client:
        url = f"{server.url}/sse/?channel=public"
        status, body = await status_of(client, url, headers={"Host": "evil.example"})
    assert status == 400
    if server.env["SSE_TEST_DOOR"] == "fast":  # the view's 400 is Django's own page
        assert body == "invalid Host header (not in ALLOWED_HOSTS)\n"
