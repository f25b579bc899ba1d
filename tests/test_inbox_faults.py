"""Inbox faults with real processes: a PostgreSQL connection killed in the middle
of a bulk ``notify()`` leaves all of it or none of it, and a stalled Redis costs
``notify()`` one bounded wait while the streams still get the items."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from contextlib import AsyncExitStack

import httpx
import pytest

from tests.conftest import postgres_env, terminate_connections, throwaway_postgres
from tests.servers import ROOT, RedisServer, Server, base_env, run_python, running_server
from tests.sse_client import login, open_stream, unique

pytestmark = [pytest.mark.server]

USERS = 3000

BULK = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import connection
from django_sse import notify
User = get_user_model()
User.objects.bulk_create([User(username=f"f{i}") for i in range(int(sys.argv[1]))])
print("READY", flush=True)
done, failed = [], []
for k in range(int(sys.argv[2])):
    try:
        notify(User.objects.all(), f"m{k}")
        done.append(k)
    except Exception as exc:
        failed.append([k, type(exc).__name__])
        connection.close()
print("RESULT " + json.dumps({"done": done, "failed": failed}))
"""

CHECK = """
import json, sys
import django
django.setup()
from django_sse.models import InboxItem, StoredEvent
out = {}
for k in range(int(sys.argv[1])):
    items = InboxItem.objects.filter(message=f"m{k}").count()
    events = StoredEvent.objects.filter(name="notification", payload__contains=f'"m{k}"').count()
    out[k] = [items, events]
print("RESULT " + json.dumps(out))
"""


async def test_a_killed_connection_mid_notify_leaves_all_or_nothing() -> None:
    rounds = 12
    with throwaway_postgres("sse_inbox") as name:
        env = {**postgres_env(name), "SSE_TEST_LAYER": "memory"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BULK,
            str(USERS),
            str(rounds),
            cwd=ROOT,
            env=base_env(**env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        ready = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert ready.startswith(b"READY"), ready
        killed = 0
        deadline = time.monotonic() + 120
        while proc.returncode is None and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(proc.wait(), 0.15)  # paces the killer
            except TimeoutError:
                killed += terminate_connections(name)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        result = json.loads(out.decode().split("RESULT ", 1)[1])
        status, checked, check_err = await run_python("-c", CHECK, str(rounds), env=env)
        assert status == 0, check_err
    states = json.loads(checked.split("RESULT ", 1)[1])
    assert killed > 0 and result["failed"], (killed, result)
    for k, (items, events) in states.items():
        # One transaction: every item with its event, or nothing at all.
        assert (items, events) in ((0, 0), (USERS, USERS)), (k, items, events)
        assert (items == USERS) == (int(k) in result["done"]), (k, result)


async def test_a_stalled_redis_costs_notify_one_bounded_wait_and_loses_nothing(
    server_db: str, private_redis_server: RedisServer
) -> None:
    redis = private_redis_server
    assert redis.proc is not None
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "redis", "REDIS_URL": redis.url}
    name = unique("stall")
    script = (
        "import sys, time, json\nimport django\ndjango.setup()\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.test.utils import override_settings\n"
        "from django_sse import inbox, notify\n"
        "User = get_user_model()\n"
        "names = [f'{sys.argv[1]}-{i}' for i in range(300)]\n"
        "User.objects.bulk_create([User(username=n) for n in names])\n"
        "user = User.objects.get(username=sys.argv[1])\n"
        "with override_settings(SSE_PUBLISH_TIMEOUT=0.5):\n"
        "    start = time.monotonic()\n"
        "    notify(User.objects.filter(username__startswith=sys.argv[1]), 'during the stall')\n"
        "    inbox.mark_read(user, list(inbox.items(user).values_list('id', flat=True)))\n"
        "    print(json.dumps({'took': time.monotonic() - start}))\n"
    )
    with running_server("uvicorn", **env, SSE_HISTORY_POLL="0.5") as server:
        async with httpx.AsyncClient(timeout=15.0) as client:
            pk = await login(client, server.url, name)
            async with open_stream(client, f"{server.url}/sse/?channel=user:{pk}") as stream:
                os.kill(redis.proc.pid, signal.SIGSTOP)
                try:
                    status, out, err = await run_python("-c", script, name, env=env, timeout=60)
                finally:
                    os.kill(redis.proc.pid, signal.SIGCONT)
                assert status == 0, out + err
                got = await stream.collect(2, timeout=10.0)
    # Two batches (notify, mark_read), each bounded as a whole, not per event.
    assert json.loads(out.strip().splitlines()[-1])["took"] < 2 * 0.5 + 2.0
    assert [(e.event, json.loads(e.data)["unread"]) for e in got] == [
        ("notification", 1),
        ("inbox", 0),
    ]
    assert "Traceback" not in err, err


@pytest.mark.redis
async def test_one_notify_from_a_worker_reaches_many_users_on_two_processes(
    redis_servers: tuple[Server, Server], redis_url: str, server_db: str
) -> None:
    """A bulk notify() in a third process: every connected user, on either
    server, gets exactly their own notification with their own count."""
    prefix = unique("many")
    per_server = 20
    clients = [httpx.AsyncClient(timeout=30.0) for _ in range(2 * per_server)]
    try:
        users: list[tuple[httpx.AsyncClient, Server, int]] = []
        for i, client in enumerate(clients):
            server = redis_servers[i % 2]
            users.append((client, server, await login(client, server.url, f"{prefix}-{i}")))
        async with AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(
                    open_stream(client, f"{server.url}/sse/?channel=user:{pk}")
                )
                for client, server, pk in users
            ]
            script = (
                "import sys\nimport django\ndjango.setup()\n"
                "from django.contrib.auth import get_user_model\n"
                "from django_sse import notify\n"
                "users = get_user_model().objects.filter(username__startswith=sys.argv[1])\n"
                "notify(users, 'for everyone <b>here</b>', level='warning')\n"
            )
            env = {"SSE_TEST_LAYER": "redis", "REDIS_URL": redis_url, "SSE_TEST_DB": server_db}
            status, out, err = await run_python("-c", script, prefix, env=env)
            assert status == 0, out + err
            got = await asyncio.gather(*(s.collect(1, name="notification") for s in streams))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    ids = set()
    for [event] in got:
        data = json.loads(event.data)
        assert (data["message"], data["level"], data["unread"]) == (
            "for everyone <b>here</b>",
            "warning",
            1,
        )
        ids.add(data["id"])
    assert len(ids) == 2 * per_server  # one item per user, each their own
