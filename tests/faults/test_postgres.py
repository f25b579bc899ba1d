"""PostgreSQL connections killed (``pg_terminate_backend``) under open streams
and during publishing: streams stay whole or end cleanly and resume, signed-in
clients are still let back in, and no event is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import postgres_env, terminate_connections, throwaway_postgres
from tests.faults.harness import (
    SETTINGS,
    Counts,
    channel_sets,
    fault_env,
    load_client,
    postgres_store,
    publish,
    score,
)
from tests.servers import RedisServer, running_server
from tests.sse_client import unique

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.redis, pytest.mark.postgres]

ANONYMOUS, SIGNED_IN = 30, 20


@pytest.fixture
def faults_pg() -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own, dropped afterwards."""
    with throwaway_postgres("faults", DJANGO_SETTINGS_MODULE=SETTINGS) as name:
        yield name


@pytest.mark.timeout(240)
async def test_postgres_connections_killed_under_streams_and_publishing(
    faults_pg: str, private_redis_server: RedisServer, record_counts: Callable[[Counts], Counts]
) -> None:
    public = [f"fault:{unique('pg')}-{i}" for i in range(2)]
    # Its policy is a permission: a query per stream, on the user-code thread.
    private = "auditors"
    channels = [*public, private]
    env = {
        **fault_env("", private_redis_server.url),
        **postgres_env(faults_pg),
        # Streams end every few seconds, so clients sign in again after each kill.
        "SSE_MAX_STREAM_AGE": "2",
    }
    counts = Counts("5 PostgreSQL connections killed", "uvicorn")
    started = time.monotonic()
    killed: list[int] = []
    with running_server("uvicorn", **env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            login = await http.get(
                "/test/login/", params={"username": "faults-pg", "perm": "auth.view_user"}
            )
            login.raise_for_status()
            cookie = f"sessionid={login.cookies['sessionid']}"
        sets = channel_sets(public, ANONYMOUS) + [[private]] * SIGNED_IN
        signed_in = list(range(ANONYMOUS, ANONYMOUS + SIGNED_IN))
        async with load_client(
            server.port, sets, headers={"Cookie": cookie}, authenticated=signed_in
        ) as (clients, ready):
            assert ready["ready"] == ANONYMOUS + SIGNED_IN, ready
            publishing = asyncio.create_task(publish(env, channels, 100, "during", pause=0.03))
            for _ in range(3):
                await asyncio.sleep(1.0)
                killed.append(terminate_connections(faults_pg))
            during = await publishing
            assert during.status == 0, during.output[-2000:]
            # Under open, idle streams, then publish again.
            killed.append(terminate_connections(faults_pg))
            await asyncio.sleep(2.5)
            after = await publish(env, channels, 10, "after")
            assert after.status == 0, after.output[-2000:]
            heads, rows = postgres_store(faults_pg, channels)
            records = await clients.finish(heads, timeout=20)
        log = server.output()
    counts.seconds = time.monotonic() - started
    counts.note = (
        f"connections killed {killed}; publisher retried {during.summary.get('failed')}; "
        f"{log.count('Traceback')} tracebacks in the server log"
    )
    record_counts(score(counts, records, heads, rows))
    assert counts.clean, counts.line()
    refused = {s: k for s, k in counts.statuses.items() if s not in ("200", "refused")}
    assert not refused, counts.line()
