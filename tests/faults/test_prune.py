"""A prune racing a resume: clients come back just as a publisher, pruning the
history on every event, reaches the events they missed. Each client gets everything, or an explicit
``stream-reset`` for what was pruned, never a silent gap."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    Counts,
    channel_sets,
    fault_env,
    ledger_matches,
    load_client,
    publish,
    score,
    sqlite_store,
)
from tests.servers import RedisServer, running_server
from tests.sse_client import unique, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.redis]

KEEP = 20
STREAMS = 200
#: Events published (each followed by a prune) while the clients come back.
RACING = 40


def oldest(db: str, channel: str) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        (first,) = conn.execute(
            "SELECT MIN(seq) FROM django_sse_storedevent WHERE channel = ?", [channel]
        ).fetchone()
    return int(first or 0)


@pytest.mark.timeout(240)
async def test_prune_racing_a_resume_never_skips_silently(
    own_db: str, private_redis_server: RedisServer, record_counts: Callable[[Counts], Counts]
) -> None:
    channels = [f"fault:{unique('prune')}-{i}" for i in range(2)]
    env = fault_env(own_db, private_redis_server.url, SSE_HISTORY_MAX_EVENTS=str(KEEP))
    counts = Counts("6 prune racing a resume", "uvicorn")
    started = time.monotonic()
    with running_server("uvicorn", **env) as server:
        async with load_client(server.port, channel_sets(channels, STREAMS)) as (clients, ready):
            assert ready["ready"] == STREAMS, ready
            first = await publish(env, channels, 5, "before")
            assert first.status == 0, first.output[-2000:]
            await clients.command("hang_up")
            await clients.wait_status(lambda s: s["streaming"] == 0)
            # Away: the history still holds everything they missed (KEEP events).
            gap = await publish(env, channels, KEEP - 5, "gap")
            assert gap.status == 0, gap.output[-2000:]
            # Back all at once, while every publish prunes to the last KEEP events.
            racing = asyncio.create_task(
                publish(
                    {**env, "SSE_HISTORY_PRUNE_INTERVAL": "0.001"},
                    channels,
                    RACING,
                    "racing",
                    pause=0.05,
                )
            )
            # Back just as the prune reaches the first event they missed (6): the
            # history they are told about at connect is gone when they read it.
            await wait_until(lambda: oldest(own_db, channels[0]) >= 4, timeout=30, interval=0.01)
            await clients.command("come_back", spread=1.0)
            racer = await racing
            assert racer.status == 0, racer.output[-2000:]
            heads, rows = sqlite_store(own_db, channels)
            records = await clients.finish(heads, timeout=60)
    counts.seconds = time.monotonic() - started
    kept = sum(len(r) for r in rows.values())
    counts.note = f"{kept} rows kept of {sum(heads.values())}"
    record_counts(score(counts, records, heads, rows))
    assert ledger_matches(heads, rows, [("before", 5), ("gap", KEEP - 5), ("racing", RACING)])
    assert kept <= len(channels) * (KEEP + 1), "the publisher did not prune"
    assert counts.clean, counts.line()
