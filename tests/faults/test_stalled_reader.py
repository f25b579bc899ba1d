"""A client that stops reading: the others get everything at once, the stalled
one is closed with ``overflow`` (or catches up) and then resumes without loss,
and the server's memory stays bounded meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.faults.harness import (
    Counts,
    fault_env,
    ledger_matches,
    load_client,
    publish,
    rss_kb,
    score,
    sqlite_store,
)
from tests.servers import RedisServer, running_server
from tests.sse_client import unique, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.redis]

READERS = 20
EVENTS, PAD = 400, 16000  # 6.4 MB: more than the socket buffers of one client hold
QUEUE = 50


# uvicorn only: daphne buffers without bound for a client that stops reading
# (docs/delivery.rst), so there its stream neither blocks nor overflows.
@pytest.mark.timeout(240)
async def test_a_stalled_reader_is_closed_or_caught_up_and_others_are_unaffected(
    faults_db: str, private_redis_server: RedisServer, record_counts: Callable[[Counts], Counts]
) -> None:
    channel = f"fault:{unique('stall')}"
    env = fault_env(faults_db, private_redis_server.url, SSE_QUEUE_SIZE=str(QUEUE))
    counts = Counts("7 stalled reader", "uvicorn")
    started = time.monotonic()
    with running_server("uvicorn", **env) as server:
        sets = [[channel]] * (READERS + 1)
        async with (
            load_client(server.port, sets, stalled=[0]) as (clients, ready),
            httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        ):
            assert ready["ready"] == READERS + 1, ready
            before = rss_kb(server.proc.pid)
            delivered = (await http.get("/test/stats/")).json()["delivered"]
            published = await publish(env, [channel], EVENTS, "big", pad=PAD)
            assert published.status == 0, published.output[-2000:]

            async def dispatched() -> bool:
                stats = (await http.get("/test/stats/")).json()
                return bool(stats["delivered"] >= delivered + EVENTS)

            await wait_until(dispatched, timeout=30, interval=0.1)
            during = rss_kb(server.proc.pid)
            await clients.command("unstall")
            heads, rows = sqlite_store(faults_db, [channel])
            records = await clients.finish(heads, timeout=60)
    counts.seconds = time.monotonic() - started
    growth_mb = (during - before) / 1024
    stalled_closes = records[0]["closes"]
    others_overflow = sum(r["closes"].get("overflow", 0) for r in records[1:])
    counts.note = (
        f"server RSS +{growth_mb:.1f} MB while stalled; stalled client closes {stalled_closes}"
    )
    record_counts(score(counts, records, heads, rows))
    assert ledger_matches(heads, rows, [("big", EVENTS)])
    assert counts.clean, counts.line()
    assert others_overflow == 0, counts.line()
    # A queue of QUEUE events of 16 KB and socket buffers: well under the 6.4 MB published.
    assert growth_mb < 20, counts.line()
