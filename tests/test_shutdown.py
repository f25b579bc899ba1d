"""Startup and shutdown on real servers: the fast path answers the ASGI
lifespan protocol for Django, and on SIGTERM every open stream gets
``stream-closed {"reason": "shutdown", "reconnect": true}`` and ends, the
process exits at once, and the clients resume on the next server with
nothing lost and nothing repeated."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent

from django_sse import shutdown
from tests.servers import ROOT, base_env, free_port, run_python, stop, wait_for_port
from tests.sse_client import Stream, is_data_event, open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server

STREAMS = 5
#: uvicorn with the lifespan protocol on (a failure is then fatal) and no
#: graceful-shutdown timeout: it would wait for open streams forever.
COMMANDS = {
    "uvicorn": ["uvicorn", "--host", "127.0.0.1", "--no-access-log", "--lifespan", "on"],
    "daphne": ["daphne", "-b", "127.0.0.1"],
}


def start(kind: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    flag = "--port" if kind == "uvicorn" else "-p"
    command = [sys.executable, "-m", *COMMANDS[kind], flag, str(port), "tests.asgi:application"]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, 30.0)
    except Exception:
        stop(proc)
        raise AssertionError(f"{kind} did not start:\n{log.read_text(errors='replace')}") from None
    return proc


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


def remove(log: Path) -> None:
    log.unlink(missing_ok=True)


async def until_end(stream: Stream, timeout: float = 10.0) -> list[ServerSentEvent]:
    """Every data event up to the end of the response body."""
    got: list[ServerSentEvent] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = await stream.next_event(max(deadline - time.monotonic(), 0.01))
        except StopAsyncIteration:
            return got
        if is_data_event(event):
            got.append(event)


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_sigterm_closes_every_stream_and_clients_resume_on_the_next_server(
    kind: str, server_db: str
) -> None:
    channel = f"news:{unique('down')}"
    port = free_port()
    env = base_env(SSE_TEST_DB=server_db, SSE_TEST_LAYER="memory", SSE_KEEPALIVE="0.5")
    with tempfile.NamedTemporaryFile(prefix=f"{kind}-", suffix=".log", delete=False) as f:
        log = Path(f.name)
    proc = start(kind, port, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=15.0) as client:
            async with AsyncExitStack() as stack:
                streams = [
                    await stack.enter_async_context(
                        open_stream(client, f"{url}/sse/?channel={channel}")
                    )
                    for _ in range(STREAMS)
                ]

                async def subscribed() -> bool:
                    stats = await client.get(f"{url}/test/stats/?channel={channel}")
                    return bool(stats.json()["subscribers"] == STREAMS)

                await wait_until(subscribed)
                await publish(client, url, channel, count=3)
                sigterm = time.monotonic()
                os.kill(proc.pid, signal.SIGTERM)
                seen = [await until_end(stream) for stream in streams]
            proc.wait(10)
            exited = time.monotonic() - sigterm
            for events in seen:
                assert [e.event for e in events] == ["message"] * 3 + ["stream-closed"], events
                assert json.loads(events[-1].data) == {"reason": "shutdown", "reconnect": True}
            # Published while no server runs: stored, and replayed on resume.
            status, out, err = await run_python(
                "-m",
                "tests.publisher",
                channel,
                "4",
                "late",
                env={"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory"},
            )
            assert status == 0, out + err
            proc = start(kind, port, env, log)
            for events in seen:
                last = events[-1].id  # stream-closed repeats the stream's position
                async with open_stream(
                    client, f"{url}/sse/?channel={channel}", headers={"Last-Event-ID": last}
                ) as stream:
                    resumed = await stream.collect(4)
                assert [(e.event, json.loads(e.data)["n"]) for e in resumed] == [
                    ("late", i) for i in range(4)
                ]
        print(f"{kind}: exited {exited:.2f}s after SIGTERM; {STREAMS} streams closed, resumed")
        assert exited < 5.0, f"{kind} took {exited:.1f}s to exit"
        output = read_log(log)
        assert "Traceback" not in output, output
    finally:
        stop(proc)
        remove(log)


async def test_the_fast_path_answers_lifespan_for_django() -> None:
    from tests.asgi import application

    sent: list[dict[str, str]] = []
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
        inbox.put_nowait(message)

    async def receive() -> dict[str, str]:
        return await inbox.get()

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    try:
        await asyncio.wait_for(application({"type": "lifespan"}, receive, send), 5)
    finally:
        shutdown.closing.clear()  # this process's streams go on in other tests
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_close_streams_ends_open_streams_and_closes_late_ones_at_once() -> None:
    from tests.asgi import application
    from tests.asgi_client import ASGIStream

    closed = b'event: stream-closed\ndata: {"reason":"shutdown","reconnect":true}\n\n'
    stream = ASGIStream("/sse/", "channel=public")
    task = asyncio.create_task(application(stream.scope, stream.receive, stream.send))
    try:
        await stream.wait_for(b"connected")
        await asyncio.wait_for(shutdown.close_streams(), 5)
        await asyncio.wait_for(task, 5)  # the response has ended
        assert stream.body.endswith(closed), stream.body
        # One that opens while the server shuts down would outlive the hub.
        late = ASGIStream("/sse/", "channel=public")
        await asyncio.wait_for(application(late.scope, late.receive, late.send), 5)
        assert late.start is not None and late.start["status"] == 200
        assert late.body.endswith(closed), late.body
    finally:
        shutdown.closing.clear()
        task.cancel()


async def test_lifespan_passes_through_to_an_application_that_speaks_it() -> None:
    from django_sse.asgi import fast_path

    seen: list[str] = []

    async def app(scope: dict[str, str], receive: object, send: object) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()  # type: ignore[operator]
            seen.append(message["type"])
            done = message["type"] + ".complete"
            await send({"type": done, "by": "app"})  # type: ignore[operator]
            if message["type"] == "lifespan.shutdown":
                return

    sent: list[dict[str, str]] = []
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
        inbox.put_nowait(message)

    async def receive() -> dict[str, str]:
        return await inbox.get()

    async def send(message: dict[str, str]) -> None:
        sent.append(message)

    try:
        await asyncio.wait_for(fast_path(app)({"type": "lifespan"}, receive, send), 5)
    finally:
        shutdown.closing.clear()
    assert seen == ["lifespan.startup", "lifespan.shutdown"]
    assert sent == [
        {"type": "lifespan.startup.complete", "by": "app"},
        {"type": "lifespan.shutdown.complete", "by": "app"},
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_db_threads")
async def test_a_view_stream_opened_during_shutdown_is_closed_and_makes_no_hub() -> None:
    from django.core.asgi import get_asgi_application

    from django_sse.hub import local_hubs
    from tests.asgi_client import ASGIStream

    closed = b'event: stream-closed\ndata: {"reason":"shutdown","reconnect":true}\n\n'
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(shutdown.close_streams(), 5)
        # Through the view alone (no fast path): the hub it would make is one
        # that no shutdown stops.
        late = ASGIStream("/sse/", "channel=public")
        await asyncio.wait_for(get_asgi_application()(late.scope, late.receive, late.send), 5)
        assert late.start is not None and late.start["status"] == 200
        assert late.body.endswith(closed), late.body
        assert [h for h in local_hubs() if h.loop is loop] == []
    finally:
        shutdown.closing.clear()
