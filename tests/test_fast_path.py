"""The ASGI fast path: what it routes, that it holds no thread per stream, and
the check that reports a project without it."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.test import override_settings

from django_sse.asgi import FastPath, fast_path, wraps_fast_path
from django_sse.checks import check_fast_path
from django_sse.conf import conf
from tests.servers import Server, running_server
from tests.sse_client import open_stream, unique, wait_until


async def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def scope(
    path: str, method: str = "GET", root_path: str = "", kind: str = "http"
) -> dict[str, Any]:
    return {"type": kind, "method": method, "path": path, "root_path": root_path}


def test_only_get_requests_for_the_stream_url_take_the_fast_path() -> None:
    door = fast_path(app)
    assert door.handles(scope("/sse/"))
    assert door.handles(scope("/mounted/sse/", root_path="/mounted"))
    assert not door.handles(scope("/sse/", method="POST"))
    assert not door.handles(scope("/sse/", method="HEAD"))
    assert not door.handles(scope("/sse/extra"))
    assert not door.handles(scope("/test/stats/"))
    assert not door.handles({"type": "websocket", "path": "/sse/"})
    assert not door.handles({"type": "lifespan"})


@override_settings(ROOT_URLCONF="tests.urls_without_sse")
def test_without_the_stream_url_everything_goes_to_the_application() -> None:
    assert not FastPath(app).handles(scope("/sse/"))


def test_wrapped_applications_are_recognised() -> None:
    from channels.routing import ProtocolTypeRouter

    door = fast_path(app)
    assert wraps_fast_path(door)
    assert wraps_fast_path(ASGIStaticFilesHandler(door))  # type: ignore[arg-type]
    assert wraps_fast_path(ProtocolTypeRouter({"http": door}))
    assert not wraps_fast_path(app)
    assert not wraps_fast_path(ASGIStaticFilesHandler(app))  # type: ignore[arg-type]


def test_w003_when_asgi_application_lacks_the_fast_path() -> None:
    assert check_fast_path() == []  # tests.asgi.application wraps it
    with override_settings(ASGI_APPLICATION="tests.asgi.django_application"):
        [message] = check_fast_path()
    assert message.id == "django_sse.W003"
    assert "fast_path" in str(message.hint)
    with override_settings(ASGI_APPLICATION="tests.asgi.django_application"):
        with override_settings(ROOT_URLCONF="tests.urls_without_sse"):
            assert check_fast_path() == []  # nothing to stream


def threads(server: Server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


async def settled_threads(server: Server, timeout: float = 5.0) -> int:
    """The thread count once it holds still: a request's helper thread may
    still be exiting when a stream has just subscribed."""
    deadline = time.monotonic() + timeout
    last = threads(server)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = threads(server)
        if now == last:
            return now
        last = now
    return last


async def open_streams(client: httpx.AsyncClient, server: Server, count: int) -> tuple[int, int]:
    """Thread counts of ``server`` with one stream open, then with ``count``."""
    channel = f"news:{unique('thr')}"

    async def subscribed(n: int) -> bool:
        stats = await client.get(f"{server.url}/test/stats/?channel={channel}")
        return bool(stats.json()["subscribers"] == n)

    async with AsyncExitStack() as stack:
        for n in range(1, count + 1):
            stream = await stack.enter_async_context(
                open_stream(client, f"{server.url}/sse/?channel={channel}")
            )
            assert stream.response.status_code == 200
            if n == 1:
                await wait_until(lambda: subscribed(1))
                one = await settled_threads(server)
        await wait_until(lambda: subscribed(count))
        return one, await settled_threads(server)


@pytest.mark.server
@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_the_fast_path_holds_no_thread_per_stream(kind: str, server_db: str) -> None:
    count = 40
    env = {"SSE_TEST_DB": server_db, "SSE_TEST_LAYER": "memory"}
    async with httpx.AsyncClient(timeout=15.0) as client:
        with running_server(kind, **env, SSE_TEST_DOOR="fast") as fast:
            one, many = await open_streams(client, fast, count)
        # At most the store threads start meanwhile, however many streams open.
        assert many - one <= conf.SSE_STORE_THREADS, (one, many)
        with running_server(kind, **env, SSE_TEST_DOOR="view") as view:
            view_one, view_many = await open_streams(client, view, count)
        # The view, for contrast: about one thread per open stream.
        assert view_many - view_one >= count // 2, (view_one, view_many)
