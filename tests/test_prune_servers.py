"""Retention against a real server: a prune under skewed publisher clocks
leaves no hole that a resuming client could skip over silently."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from tests.servers import run_python, running_server
from tests.sse_client import is_data_event, open_stream, publish, unique

pytestmark = pytest.mark.server

PRUNE = """
import django
django.setup()
from django.test.utils import override_settings
from django_sse.store import get_store
with override_settings(SSE_HISTORY_MAX_AGE=86400, SSE_HISTORY_MAX_EVENTS=1000):
    print(get_store().prune())
"""


async def test_a_prune_under_clock_skew_makes_a_resume_reset_never_skip(server_db: str) -> None:
    channel = f"news:{unique('skew')}"
    with running_server("uvicorn", SSE_TEST_DB=server_db, SSE_TEST_LAYER="memory") as server:
        async with httpx.AsyncClient(timeout=15.0) as client:
            url = f"{server.url}/sse/?channel={channel}"
            async with open_stream(client, url) as stream:
                await publish(client, server.url, channel, count=4)
                events = await stream.collect(4)
            seen = events[0].id  # the client saw #1, then went away
            # #2 was published by a process whose clock runs two days behind.
            with sqlite3.connect(server_db) as db:
                db.execute(
                    "UPDATE django_sse_storedevent SET created = datetime('now', '-2 days') "
                    "WHERE channel = ? AND seq = 2",
                    [channel],
                )
            status, out, err = await run_python("-c", PRUNE, env={"SSE_TEST_DB": server_db})
            assert status == 0, out + err
            async with open_stream(client, url, headers={"Last-Event-ID": seen}) as stream:
                first = await stream.next_event()
                while not is_data_event(first):
                    first = await stream.next_event()
    # #2 is gone: the client must be told, not handed #3 as if nothing were missing.
    assert first.event == "stream-reset", (first.event, first.data)
