"""Publishing never hangs: against a Redis that accepts and never answers
(a real redis-server stopped with SIGSTOP), ``send_event``, ``asend_event`` and
``revoke()`` return within ``SSE_PUBLISH_TIMEOUT``, the stored events still
reach a real server's streams through the catch-up poll, and once Redis
answers again the next publish goes through the layer."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from tests.servers import RedisServer, run_python, running_server
from tests.sse_client import login, open_stream, unique

pytestmark = [pytest.mark.server, pytest.mark.redis]

BOUND = 0.5

PUBLISHER = """
import asyncio, json, os, signal, sys, time
import django
django.setup()
from django.test.utils import override_settings
from django_sse import asend_event, send_event
from django_sse.revocation import arevoke, revoke

channel, ephemeral, redis_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
took = {}

def timed(name, call):
    start = time.monotonic()
    call()
    took[name] = time.monotonic() - start

with override_settings(SSE_PUBLISH_TIMEOUT=float(sys.argv[4])):
    timed("send_event", lambda: send_event(channel, "message", {"n": 0}))
    timed("asend_event", lambda: asyncio.run(asend_event(channel, "message", {"n": 1})))
    timed("send_event again", lambda: send_event(channel, "message", {"n": 2}))
    timed("revoke", lambda: revoke(10**9))
    timed("arevoke", lambda: asyncio.run(arevoke(10**9)))
    os.kill(redis_pid, signal.SIGCONT)
    # Redis answers again: the same loop and pool publish through the layer.
    timed("healthy", lambda: send_event(ephemeral, "typing", {"after": "recovery"}))
print(json.dumps(took))
"""


async def test_publishing_to_a_stalled_redis_returns_in_time_and_nothing_is_lost(
    server_db: str, private_redis_server: RedisServer
) -> None:
    redis = private_redis_server
    assert redis.proc is not None
    channel = f"news:{unique('stall')}"
    ephemeral = f"typing:{unique('stall')}"
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "redis", "REDIS_URL": redis.url}
    with running_server("uvicorn", **env, SSE_HISTORY_POLL="0.5") as server:
        async with httpx.AsyncClient(timeout=15.0) as client:
            url = f"{server.url}/sse/?channel={channel}&channel={ephemeral}"
            async with open_stream(client, url) as stream:
                os.kill(redis.proc.pid, signal.SIGSTOP)
                try:
                    status, out, err = await run_python(
                        "-c",
                        PUBLISHER,
                        channel,
                        ephemeral,
                        str(redis.proc.pid),
                        str(BOUND),
                        env=env,
                        timeout=30.0,
                    )
                finally:
                    os.kill(redis.proc.pid, signal.SIGCONT)
                assert status == 0, out + err
                took = json.loads(out.strip().splitlines()[-1])
                # The three stored events, through the store; the ephemeral one,
                # published after recovery, through the layer.
                got = await stream.collect(4, timeout=10.0)
    assert all(seconds < BOUND + 1.0 for seconds in took.values()), took
    assert sorted(json.loads(e.data)["n"] for e in got if e.event == "message") == [0, 1, 2]
    assert [json.loads(e.data) for e in got if e.event == "typing"] == [{"after": "recovery"}]
    # One warning for the publishes and one error for the revocations, not one
    # traceback per call.
    assert "Traceback" not in err, err
    assert err.count("did not answer within SSE_PUBLISH_TIMEOUT") == 2, err


async def test_a_revocation_during_a_stall_still_closes_this_process_streams(
    server_db: str, private_redis_server: RedisServer
) -> None:
    redis = private_redis_server
    assert redis.proc is not None
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "redis", "REDIS_URL": redis.url}
    username = unique("stall")
    with running_server("uvicorn", **env, SSE_PUBLISH_TIMEOUT=str(BOUND)) as server:
        async with httpx.AsyncClient(timeout=15.0) as client:
            await login(client, server.url, username)
            async with open_stream(client, f"{server.url}/sse/?channel=members") as stream:
                os.kill(redis.proc.pid, signal.SIGSTOP)
                try:
                    start = time.monotonic()
                    answer = await client.get(
                        f"{server.url}/test/revoke/", params={"username": username}
                    )
                    took = time.monotonic() - start
                    [closed] = await stream.collect(1, timeout=5.0)
                finally:
                    os.kill(redis.proc.pid, signal.SIGCONT)
    assert answer.status_code == 200 and took < BOUND + 1.0, (answer.status_code, took)
    assert closed.event == "stream-closed"
    assert json.loads(closed.data) == {"reason": "revoked", "reconnect": False}
