"""A server killed (``kill -9``) or stopped (SIGTERM) under resuming streams, with
events published while it is down: every client resumes with every event once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.faults.harness import (
    LONG,
    Counts,
    channel_sets,
    fault_env,
    kill9_and_restart,
    ledger_matches,
    load_client,
    publish,
    running_graceful_uvicorn,
    score,
    spawn,
    sqlite_store,
)
from tests.servers import RedisServer, running_server
from tests.sse_client import unique

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.redis]

STREAMS = 1000 if LONG else 300
#: Small enough that a catch-up poll handing every missed event to every
#: stream at once overflows it; the downtime publishes more than this.
QUEUE = 100
DOWNTIME_EVENTS = 150


def batches(during: int) -> list[tuple[str, int]]:
    return [("before", 10), ("down", during), ("after", 10)]


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
@pytest.mark.timeout(900 if LONG else 300)
async def test_kill_9_and_restart_under_resuming_streams(
    kind: str,
    faults_db: str,
    private_redis_server: RedisServer,
    record_counts: Callable[[Counts], Counts],
) -> None:
    channels = [f"fault:{unique('k9')}-{i}" for i in range(4)]
    env = fault_env(faults_db, private_redis_server.url, SSE_QUEUE_SIZE=str(QUEUE))
    counts = Counts("1 kill -9 + restart", kind)
    started = time.monotonic()
    with running_server(kind, **env) as server:
        async with load_client(server.port, channel_sets(channels, STREAMS)) as (clients, ready):
            assert ready["ready"] == STREAMS, ready
            await kill9_and_restart(server, env, channels, batches(DOWNTIME_EVENTS))
            heads, rows = sqlite_store(faults_db, channels)
            records = await clients.finish(heads, timeout=120 if LONG else 60)
        log = server.output()
    counts.seconds = time.monotonic() - started
    counts.note = f"{log.count('Traceback')} tracebacks in the server log"
    record_counts(score(counts, records, heads, rows))
    assert ledger_matches(heads, rows, batches(DOWNTIME_EVENTS))
    assert counts.clean, counts.line()
    # Every stream was reading: an overflow closed a healthy stream (a reconnect storm).
    assert not counts.closes.get("overflow"), counts.line()


@pytest.mark.timeout(900 if LONG else 300)
async def test_graceful_restart_closes_every_stream_with_shutdown_then_resumes(
    faults_db: str,
    private_redis_server: RedisServer,
    record_counts: Callable[[Counts], Counts],
) -> None:
    grace = 3.0
    channels = [f"fault:{unique('term')}-{i}" for i in range(4)]
    env = fault_env(faults_db, private_redis_server.url, SSE_QUEUE_SIZE=str(QUEUE))
    counts = Counts("2 graceful restart (SIGTERM)", "uvicorn")
    streams = STREAMS // 3
    started = time.monotonic()
    with running_graceful_uvicorn(grace, **env) as server:
        async with load_client(server.port, channel_sets(channels, streams)) as (clients, ready):
            assert ready["ready"] == streams, ready
            first = await publish(env, channels, 10, "before")
            assert first.status == 0, first.output[-2000:]
            # Publishing goes on while the server shuts down.
            down_task = asyncio.create_task(publish(env, channels, 30, "down", pause=0.05))

            stopping = time.monotonic()
            os.kill(server.proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(server.proc.wait, grace + 10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(10)
            exited_after = time.monotonic() - stopping
            down = await down_task
            server.proc = spawn(server.proc.args, server.port, server.env, server.log)  # type: ignore[arg-type]
            assert down.status == 0, down.output[-2000:]
            after = await publish(env, channels, 10, "after")
            assert after.status == 0, after.output[-2000:]

            heads, rows = sqlite_store(faults_db, channels)
            records = await clients.finish(heads, timeout=60)
        log = server.output()
    counts.seconds = time.monotonic() - started
    counts.note = f"exited {exited_after:.1f}s after SIGTERM; {log.count('Traceback')} tracebacks"
    record_counts(score(counts, records, heads, rows))
    assert ledger_matches(heads, rows, batches(30))
    assert counts.clean, counts.line()
    # Every stream open at SIGTERM was told. uvicorn sends the lifespan shutdown
    # only after its connections closed or its graceful timeout cancelled them,
    # so the bound is the timeout, plus a little.
    assert counts.closes.get("shutdown", 0) >= streams, counts.line()
    assert exited_after < grace + 5, counts.line()
