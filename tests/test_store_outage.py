"""A database outage after the response head ends streams cleanly.

Real PostgreSQL: the server's connections are killed with
``pg_terminate_backend`` and new ones refused, so every store read of a stream
fails. Each stream then writes a jittered ``retry:`` and ``stream-closed
{"reason": "unavailable", "reconnect": true}`` and ends its body; the server
logs the outage once, not once per stream, and streams work again once the
database is back.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import PG_ADMIN, postgres_env
from tests.servers import running_server
from tests.sse_client import open_stream, publish, unique

pytestmark = [pytest.mark.server, pytest.mark.postgres]

CLOSED = 'event: stream-closed\ndata: {"reason":"unavailable","reconnect":true}\n\n'


@contextmanager
def database_down(name: str) -> Iterator[None]:
    """Refuse new connections to ``name`` and end the open ones, until the block ends."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        try:
            yield
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(name)
                )
            )


async def whole_body(client: httpx.AsyncClient, url: str, timeout: float = 15.0) -> str:
    """The body of a stream the server ends, read to its end."""

    async def read() -> str:
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            return "".join([text async for text in response.aiter_text()])

    return await asyncio.wait_for(read(), timeout)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("kind", "door"), [("daphne", "view"), ("uvicorn", "fast")])
async def test_a_database_outage_ends_streams_with_unavailable(
    postgres_db: str, kind: str, door: str
) -> None:
    channel = f"news:{unique('down')}"
    env = {**postgres_env(postgres_db), "SSE_TEST_LAYER": "memory", "SSE_KEEPALIVE": "0.5"}
    with running_server(kind, **env, SSE_TEST_DOOR=door, SSE_HISTORY_POLL="0.3") as server:
        url = f"{server.url}/sse/?channel={channel}"
        async with httpx.AsyncClient(timeout=30.0) as client:
            await publish(client, server.url, channel, event="e", data={"n": 0})
            async with open_stream(client, url) as live:
                with database_down(postgres_db):
                    # Streams opened now get their first bytes, then the close:
                    # a resuming one (its history query fails) and fresh ones on
                    # a channel this process does not serve yet (a channel it
                    # serves may start from a head another stream just read).
                    fresh = f"{server.url}/sse/?channel={channel}-new"
                    bodies = await asyncio.gather(
                        whole_body(client, f"{fresh}&lastEventId=00000000-0"),
                        *(whole_body(client, fresh) for _ in range(4)),
                    )
                    # A live stream that needs no read of the store stays open.
                    assert not live.response.is_closed
                for body in bodies:
                    assert body.startswith("retry: 3000\n: connected\n"), body
                    assert body.endswith(CLOSED), body
                    # Clients come back spread over 1-4 times SSE_RETRY_MS.
                    delays = [int(d) for d in re.findall(r"^retry: (\d+)$", body, re.M)]
                    assert len(delays) == 2 and 3000 <= delays[1] <= 12000, body
                # The database is back: new streams and the live one work.
                async with open_stream(client, url) as again:
                    await publish(client, server.url, channel, event="e", data={"n": 1})
                    [event] = await again.collect(1, name="e")
                    assert json.loads(event.data) == {"n": 1}
                    [event] = await live.collect(1, name="e")
                    assert json.loads(event.data) == {"n": 1}
        log = server.output()
    # One warning per outage (with its traceback), not one per stream; the
    # console handler of tests/settings.py prints each record as its message.
    warnings = [line for line in log.splitlines() if line.startswith("Event store unavailable")]
    assert len(warnings) == 1, warnings
    assert "Event store available again" in log
    assert "Event stream failed" not in log and "Exception inside application" not in log
