"""The resume storm after a deploy: a server holding many streams is killed and
started again while events keep being published; every client comes back with
its ``Last-Event-ID``. Each must end with every event once, in order, and the
store must be read per distinct (channel, position), not per client
(:mod:`django_sse.reads`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.faults.harness import (
    LONG,
    Counts,
    channel_sets,
    fault_env,
    kill9_and_restart,
    ledger_matches,
    load_client,
    score,
    sqlite_store,
)
from tests.servers import RedisServer, running_server
from tests.sse_client import unique

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.redis]

STREAMS = 3000 if LONG else 1000
CHANNELS = 10
DOWNTIME_EVENTS = 40
BATCHES = [("before", 5), ("down", DOWNTIME_EVENTS), ("after", 5)]


@pytest.mark.parametrize(
    ("retry_ms", "arrival"),
    # The load client waits the server's retry: with jitter (0.5-1.5x, at most
    # 2 s), as the JS helper does: all at once after a short retry, or spread
    # over seconds after a long one.
    [("200", "all at once"), ("2000", "jittered over ~3 s")],
)
@pytest.mark.timeout(900 if LONG else 300)
async def test_a_resume_storm_catches_every_client_up_with_shared_store_reads(
    retry_ms: str,
    arrival: str,
    faults_db: str,
    private_redis_server: RedisServer,
    record_counts: Callable[[Counts], Counts],
) -> None:
    channels = [f"fault:{unique('storm')}-{i}" for i in range(CHANNELS)]
    env = fault_env(faults_db, private_redis_server.url, SSE_RETRY_MS=retry_ms)
    counts = Counts(f"9 resume storm, {arrival}", "uvicorn")
    sets = channel_sets(channels, STREAMS)
    with running_server("uvicorn", **env) as server:
        async with load_client(server.port, sets) as (clients, ready):
            assert ready["ready"] == STREAMS, ready
            restarted = await kill9_and_restart(server, env, channels, BATCHES)
            heads, rows = sqlite_store(faults_db, channels)
            records = await clients.finish(heads, timeout=120 if LONG else 60)
            caught_up = time.monotonic() - restarted
            async with httpx.AsyncClient(timeout=10.0) as http:
                stats = (await http.get(f"{server.url}/test/stats/")).json()
        log = server.output()
    counts.seconds = caught_up
    # Every client was live at the kill: one position per channel, so the
    # distinct (channel, position) pairs a resume starts from are the channels.
    pairs = CHANNELS
    reads = stats["store_reads"]
    counts.note = (
        f"{reads} store reads for {STREAMS} resumes from {pairs} (channel, position) "
        f"pairs; {log.count('Traceback')} tracebacks"
    )
    record_counts(score(counts, records, heads, rows))
    assert ledger_matches(heads, rows, BATCHES)
    assert counts.clean, counts.line()
    assert not counts.closes.get("overflow"), counts.line()
    # Without sharing, each resume costs three reads (heads, oldest, a page).
    assert reads < STREAMS / 4, counts.note
