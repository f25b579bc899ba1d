"""Redis stopped, then started again, and Redis stalled (it accepts and never
answers), under two server processes sharing it and a publisher in a third."""

from __future__ import annotations

import os
import signal
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
from tests.sse_client import unique

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.redis]

STREAMS_PER_SERVER = 50
#: ``SSE_PUBLISH_TIMEOUT`` of the scenario's processes, in seconds.
PUBLISH_TIMEOUT = 0.5


async def _two_servers_scenario(
    name: str,
    db: str,
    redis: RedisServer,
    record_counts: Callable[[Counts], Counts],
    fault: Callable[[], None],
    heal: Callable[[], None],
) -> tuple[Counts, list[float]]:
    channels = [f"fault:{unique('redis')}-{i}" for i in range(2)]
    env = fault_env(db, redis.url, SSE_PUBLISH_TIMEOUT=str(PUBLISH_TIMEOUT))
    counts = Counts(name, "uvicorn+daphne")
    sets = channel_sets(channels, STREAMS_PER_SERVER)
    started = time.monotonic()
    publish_seconds: list[float] = []
    with (
        running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as one,
        running_server("daphne", **env, SSE_TEST_DOOR="view") as two,
    ):
        async with (
            load_client(one.port, sets) as (clients_one, ready_one),
            load_client(two.port, sets) as (clients_two, ready_two),
        ):
            assert ready_one["ready"] == ready_two["ready"] == STREAMS_PER_SERVER
            first = await publish(env, channels, 5, "before")
            assert first.status == 0, first.output[-2000:]
            fault()
            try:
                # 3 events on each of 2 channels: at most 6 layer calls to bound.
                down = await publish(env, channels, 3, "down", timeout=15)
                publish_seconds.append(down.seconds)
            finally:
                heal()
            after = await publish(env, channels, 5, "after")
            assert after.status == 0, after.output[-2000:]
            heads, rows = sqlite_store(db, channels)
            records = await clients_one.finish(heads, timeout=45)
            records += await clients_two.finish(heads, timeout=15)
        logs = one.output() + two.output()
    counts.seconds = time.monotonic() - started
    hung = down.status != 0
    counts.note = (
        f"publisher during the fault: {'killed after 15 s, hung' if hung else 'exited'} "
        f"({down.seconds:.1f}s, {down.summary or 'no summary'}); "
        f"{logs.count('Traceback')} tracebacks in the server logs"
    )
    record_counts(score(counts, records, heads, rows))
    if not hung:
        assert ledger_matches(heads, rows, [("before", 5), ("down", 3), ("after", 5)])
    return counts, publish_seconds


@pytest.mark.timeout(240)
async def test_redis_stopped_and_started_again(
    faults_db: str, private_redis_server: RedisServer, record_counts: Callable[[Counts], Counts]
) -> None:
    counts, _ = await _two_servers_scenario(
        "3 Redis stop/start",
        faults_db,
        private_redis_server,
        record_counts,
        fault=private_redis_server.kill,
        heal=private_redis_server.start,
    )
    assert counts.clean, counts.line()
    assert not counts.closes, counts.line()


@pytest.mark.timeout(240)
async def test_redis_stalled_publishers_do_not_hang_and_events_arrive(
    faults_db: str, private_redis_server: RedisServer, record_counts: Callable[[Counts], Counts]
) -> None:
    assert private_redis_server.proc is not None
    pid = private_redis_server.proc.pid
    counts, seconds = await _two_servers_scenario(
        "4 Redis stalled (SIGSTOP)",
        faults_db,
        private_redis_server,
        record_counts,
        fault=lambda: os.kill(pid, signal.SIGSTOP),
        heal=lambda: os.kill(pid, signal.SIGCONT),
    )
    # 6 layer calls bounded by SSE_PUBLISH_TIMEOUT each, plus the process's start-up.
    assert seconds[0] < 6 * PUBLISH_TIMEOUT + 8, counts.line()
    assert counts.clean, counts.line()
    assert not counts.closes, counts.line()
