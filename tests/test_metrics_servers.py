"""Prometheus metrics scraped from real daphne and uvicorn processes.

Each server runs with ``SSE_METRICS = True``; the tests open streams, publish
and resume through HTTP, then read ``/metrics/`` (django_sse's view) and
``/django-prometheus/metrics`` (django-prometheus's) as Prometheus would.
Figures are compared with a scrape taken before, so tests sharing a server do
not depend on each other's order.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.ops_helpers import (
    KIND_IDS,
    KINDS,
    Samples,
    memory_server,
    one_event_through,
    redis_env,
    scrape,
    value,
)
from tests.servers import RedisServer, Server, running_server, spawn_server
from tests.sse_client import open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server

DOORS = {"fast": "asgi", "view": "view"}


@pytest.fixture(scope="module", params=KINDS, ids=KIND_IDS)
def metered(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    with memory_server(request.param, server_db, SSE_TEST_METRICS="1", SSE_KEEPALIVE="0.5") as srv:
        yield srv


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as c:
        yield c


def door_of(server: Server) -> str:
    return DOORS[server.env["SSE_TEST_DOOR"]]


async def until(
    client: httpx.AsyncClient, server: Server, name: str, expected: float, **labels: str
) -> Samples:
    """Scrape until ``name{labels}`` reads ``expected``; return that scrape."""
    found: dict[str, Samples] = {}

    async def reached() -> bool:
        found["s"] = await scrape(client, server.url)
        return value(found["s"], name, **labels) == expected

    try:
        await wait_until(reached, timeout=15.0, interval=0.1)
    except TimeoutError:
        got = value(found["s"], name, **labels)
        raise AssertionError(f"{name}{labels} is {got}, expected {expected}") from None
    return found["s"]


async def test_a_stream_is_counted_from_open_to_close(
    metered: Server, client: httpx.AsyncClient
) -> None:
    door = door_of(metered)
    channel = f"news:{unique('m')}"
    before = await scrape(client, metered.url)
    opened = value(before, "django_sse_streams_opened_total", door=door)
    gone = value(before, "django_sse_streams_closed_total", door=door, reason="client gone")
    async with open_stream(client, f"{metered.url}/sse/?channel={channel}") as stream:
        during = await until(
            client,
            metered,
            "django_sse_streams_open",
            value(before, "django_sse_streams_open", door=door) + 1,
            door=door,
        )
        assert value(during, "django_sse_streams_opened_total", door=door) == opened + 1
        await publish(client, metered.url, channel, count=3)
        assert len(await stream.collect(3)) == 3
        after = await scrape(client, metered.url)
        published = value(after, "django_sse_events_published_total") - value(
            before, "django_sse_events_published_total"
        )
        assert published == 3
        timed = value(after, "django_sse_publish_duration_seconds_count") - value(
            before, "django_sse_publish_duration_seconds_count"
        )
        assert timed == 3
        delivered = value(after, "django_sse_deliveries_total") - value(
            before, "django_sse_deliveries_total"
        )
        assert delivered == 3
        # send_event, from a sync view, is counted and timed too.
        response = await client.post(
            f"{metered.url}/test/publish-sync/", json={"channel": channel, "data": {"n": 3}}
        )
        response.raise_for_status()
        await stream.collect(1)
        synced = await scrape(client, metered.url)
        grew = value(synced, "django_sse_events_published_total") - value(
            after, "django_sse_events_published_total"
        )
        assert grew == 1
        assert value(synced, "django_sse_publish_duration_seconds_count") > value(
            after, "django_sse_publish_duration_seconds_count"
        )
    closed = await until(
        client,
        metered,
        "django_sse_streams_closed_total",
        gone + 1,
        door=door,
        reason="client gone",
    )
    assert value(closed, "django_sse_streams_open", door=door) == value(
        before, "django_sse_streams_open", door=door
    )
    assert value(closed, "django_sse_stream_duration_seconds_count") > value(
        before, "django_sse_stream_duration_seconds_count"
    )


async def test_resumes_are_counted_by_outcome(metered: Server, client: httpx.AsyncClient) -> None:
    channel = f"news:{unique('r')}"
    url = f"{metered.url}/sse/?channel={channel}"
    before = await scrape(client, metered.url)
    await publish(client, metered.url, channel)
    async with open_stream(client, url) as stream:
        await publish(client, metered.url, channel)
        [event] = await stream.collect(1)
    await publish(client, metered.url, channel)
    async with open_stream(client, url, headers={"Last-Event-ID": event.id}) as stream:
        [missed] = await stream.collect(1)
        assert json.loads(missed.data) == {"n": 0}
    async with open_stream(client, url, headers={"Last-Event-ID": "not-one-of-ours"}) as stream:
        [reset] = await stream.collect(1, name="stream-reset")
        assert json.loads(reset.data) == {"reason": "unknown last event id"}
    after = await scrape(client, metered.url)
    for labels, grew in [
        ({"outcome": "replayed", "reason": ""}, 1),
        ({"outcome": "reset", "reason": "unknown last event id"}, 1),
    ]:
        name = "django_sse_resumes_total"
        assert value(after, name, **labels) - value(before, name, **labels) == grew, labels


async def test_django_prometheus_exports_the_same_figures(
    metered: Server, client: httpx.AsyncClient
) -> None:
    ours = await scrape(client, metered.url)
    theirs = await scrape(client, metered.url, "/django-prometheus/metrics")
    name = "django_sse_streams_opened_total"
    door = door_of(metered)
    assert (name, (("door", door),)) in theirs
    # No stream opened between the two scrapes of this test's own channel-less view.
    assert value(theirs, name, door=door) >= value(ours, name, door=door)


async def test_the_metrics_view_answers_get_only(
    metered: Server, client: httpx.AsyncClient
) -> None:
    response = await client.post(f"{metered.url}/metrics/")
    assert response.status_code == 405


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_counters_come_from_the_new_process_after_a_restart(server_db: str, how: str) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_TEST_METRICS": "1"}
    channel = f"news:{unique('restart')}"
    async with httpx.AsyncClient(timeout=30.0) as client:
        with running_server("uvicorn", **env) as server:
            await one_event_through(client, server, channel)
            async with open_stream(client, f"{server.url}/sse/?channel={channel}"):
                await publish(client, server.url, channel)
                before = await scrape(client, server.url)
                assert value(before, "django_sse_streams_open", door="asgi") == 1
                assert value(before, "django_sse_streams_opened_total", door="asgi") == 2
                assert value(before, "django_sse_events_published_total") == 2
                if how == "sigterm":
                    server.restart()
                else:
                    os.kill(server.proc.pid, signal.SIGKILL)
                    server.proc.wait(10)
                    server.proc = spawn_server(server.kind, server.port, server.env, server.log)
            # A new process counts from zero (Prometheus' rate() reads that as a
            # reset): nothing of the old one is open or counted...
            fresh = await scrape(client, server.url)
            assert value(fresh, "django_sse_streams_open", door="asgi") == 0
            assert value(fresh, "django_sse_streams_opened_total", door="asgi") == 0
            assert value(fresh, "django_sse_events_published_total") == 0
            # ...and it counts on.
            after = await one_event_through(client, server, channel)
            assert value(after, "django_sse_streams_opened_total", door="asgi") == 1
            assert value(after, "django_sse_events_published_total") == 1


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_metrics_count_on_through_a_redis_outage(
    server_db: str, private_redis_server: RedisServer
) -> None:
    env = redis_env(
        server_db,
        private_redis_server.url,
        SSE_TEST_METRICS="1",
        SSE_HISTORY_POLL="0.2",
        SSE_KEEPALIVE="0.5",
    )
    channel = f"news:{unique('redis')}"
    async with httpx.AsyncClient(timeout=30.0) as client:
        with running_server("uvicorn", **env) as server:
            async with open_stream(client, f"{server.url}/sse/?channel={channel}") as stream:
                await publish(client, server.url, channel)
                await stream.collect(1)
                before = await scrape(client, server.url)
                private_redis_server.kill()
                # Stored, so published: streams read them at the catch-up poll.
                await publish(client, server.url, channel, count=2)
                got = await stream.collect(2, timeout=20.0)
                assert [json.loads(e.data) for e in got] == [{"n": 0}, {"n": 1}]
                down = await scrape(client, server.url)
                grew = value(down, "django_sse_events_published_total") - value(
                    before, "django_sse_events_published_total"
                )
                assert grew == 2
                layer_errors = sum(
                    v - before.get(k, 0.0)
                    for k, v in down.items()
                    if k[0] == "django_sse_layer_errors_total"
                )
                assert layer_errors >= 1, down
                assert value(down, "django_sse_catchup_streams_behind_total") > value(
                    before, "django_sse_catchup_streams_behind_total"
                )
                private_redis_server.start()
                await publish(client, server.url, channel)
                await stream.collect(1, timeout=20.0)
            after = await scrape(client, server.url)
            assert (
                value(after, "django_sse_events_published_total")
                == value(down, "django_sse_events_published_total") + 1
            )


async def test_presence_and_inbox_changes_are_counted(
    metered: Server, client: httpx.AsyncClient
) -> None:
    from tests.sse_client import login

    await login(client, metered.url, f"m-{unique()}")
    before = await scrape(client, metered.url)
    joins = value(before, "django_sse_presence_changes_total", kind="join")
    leaves = value(before, "django_sse_presence_changes_total", kind="leave")
    new = value(before, "django_sse_inbox_changes_total", action="new")
    channel = f"desk:{2 * int(unique().encode().hex()[:6], 16)}"  # an even pk: readable
    async with open_stream(client, f"{metered.url}/sse/?channel={channel}") as stream:
        assert stream.response.status_code == 200
        await until(client, metered, "django_sse_presence_changes_total", joins + 1, kind="join")
        response = await client.post(f"{metered.url}/test/notify-to-others/", json={"n": 1})
        assert response.status_code == 200
        await until(client, metered, "django_sse_inbox_changes_total", new + 1, action="new")
    await until(client, metered, "django_sse_presence_changes_total", leaves + 1, kind="leave")
