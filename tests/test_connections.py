"""Database connections: store calls reuse a few threads' connections, heal
after the database drops them, and open streams hold none each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from django_sse import asend_event, dbthreads
from django_sse.conf import conf
from django_sse.store import call as store_call
from django_sse.store import get_store
from tests.conftest import PG_ADMIN, postgres_env, terminate_connections
from tests.servers import running_server
from tests.sse_client import login, open_stream, unique, wait_until

pytestmark = pytest.mark.usefixtures("close_db_threads")


@pytest.fixture
def new_connections() -> Iterator[list[Any]]:
    """Every database connection opened while the test runs, in any thread."""
    opened: list[Any] = []

    def record(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    connection_created.connect(record, weak=False)
    try:
        yield opened
    finally:
        connection_created.disconnect(record)


@pytest.mark.django_db(transaction=True)
async def test_asend_event_reuses_the_store_threads_connections(
    new_connections: list[Any],
) -> None:
    channel = f"news:{unique('conn')}"
    for i in range(30):
        await asend_event(channel, "e", i)
    store = get_store()
    assert store is not None
    assert (await store_call(store.heads, [channel]))[channel] == 30
    assert 1 <= len(new_connections) <= conf.SSE_STORE_THREADS


def backend_pid() -> int:
    """The PostgreSQL backend of the calling thread's connection."""
    connection.ensure_connection()
    return int(connection.connection.info.backend_pid)


def terminate(pid: int) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
async def test_store_threads_recover_when_the_database_drops_their_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asgiref.sync import sync_to_async

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL, which can drop a connection from outside")
    store = get_store()
    assert store is not None
    channel = f"news:{unique('heal')}"
    await asend_event(channel, "e", 1)
    # Calls in sequence all run on the first store thread.
    pid = await store_call(backend_pid)

    # A read on a dropped connection is tried once more on a fresh one.
    monkeypatch.setattr(dbthreads, "HEALTH_CHECK_AFTER", 1e9)
    await sync_to_async(terminate)(pid)
    assert (await store_call(store.heads, [channel]))[channel] == 1
    pid2 = await store_call(backend_pid)
    assert pid2 != pid

    # A write is never repeated; after an idle spell the connection is checked first.
    monkeypatch.setattr(dbthreads, "HEALTH_CHECK_AFTER", -1.0)
    await sync_to_async(terminate)(pid2)
    sent = await asend_event(channel, "e", 2)
    assert sent.seq == 2
    assert await store_call(backend_pid) not in (pid, pid2)


def count_connections(dbname: str) -> int:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname]
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.server
@pytest.mark.postgres
async def test_open_streams_do_not_hold_a_database_connection_each(postgres_db: str) -> None:
    streams = 20
    env = {**postgres_env(postgres_db), "SSE_TEST_LAYER": "memory"}
    with running_server("uvicorn", **env) as server:
        async with httpx.AsyncClient(timeout=15.0) as client, AsyncExitStack() as stack:
            await login(client, server.url, unique("conn"))
            # A session lookup, a callable policy and a snapshot: each queries the
            # database on the request's thread.
            # Half the streams have no snapshot, so nothing after authorization
            # touches the request's thread.
            query = "channel=members&channel=ticket:2"
            for i in range(streams):
                url = f"{server.url}/sse/?{query}" + ("&channel=counter:conn" if i % 2 else "")
                stream = await stack.enter_async_context(open_stream(client, url))
                assert stream.response.status_code == 200
                if i % 2:
                    snapshot = await stream.next_event()
                    assert snapshot.event == "snapshot"

            async def all_subscribed() -> bool:
                stats = await client.get(f"{server.url}/test/stats/?channel=members")
                return bool(stats.json()["subscribers"] == streams)

            await wait_until(all_subscribed)
            held = count_connections(postgres_db)
    # The store threads' connections, and at most one more (the stats request's).
    assert held <= conf.SSE_STORE_THREADS + 1, f"{held} connections for {streams} streams"


async def open_slow_streams(base: str, count: int) -> tuple[float, list[int]]:
    """Open ``count`` fast-path streams at once, each on a channel whose sync
    policy takes 0.2 s; return the wall time until all answered, and statuses."""

    async def one(client: httpx.AsyncClient, i: int) -> int:
        url = f"{base}/sse/?channel=slow:{unique('p')}{i}"
        async with open_stream(client, url) as stream:
            return stream.response.status_code

    async with httpx.AsyncClient(timeout=30.0) as client:
        await one(client, -1)  # warm up: imports, the first connection
        start = time.monotonic()
        statuses = await asyncio.gather(*(one(client, i) for i in range(count)))
        return time.monotonic() - start, list(statuses)


@pytest.mark.server
async def test_slow_sync_policies_of_fast_path_streams_run_in_parallel(server_db: str) -> None:
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory", "SSE_TEST_DOOR": "fast"}
    with running_server("uvicorn", **env) as server:
        took, statuses = await open_slow_streams(server.url, 10)
    print(f"ten 0.2 s policies on the fast path: {took:.2f}s")
    assert statuses == [200] * 10
    # One policy's time and some overhead; queued on one thread, they took 2.0 s.
    assert took < 1.0, f"{took:.2f}s for ten 0.2 s policies"


@pytest.mark.server
@pytest.mark.postgres
async def test_fast_path_policy_checks_survive_the_database_dropping_connections(
    postgres_db: str,
) -> None:
    env = {**postgres_env(postgres_db), "SSE_TEST_LAYER": "memory", "SSE_TEST_DOOR": "fast"}
    with running_server("uvicorn", **env) as server:
        _, before = await open_slow_streams(server.url, 2)
        assert before == [200, 200]
        # A database restart or an idle timeout, as the server sees it.
        assert terminate_connections(postgres_db) >= 1
        _, after = await open_slow_streams(server.url, 2)
        output = server.output()
    assert after == [200, 200], output[-3000:]
