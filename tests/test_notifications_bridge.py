"""The django-notifications bridge against the real package (django-notifications-community),
in a real uvicorn process running tests/settings_notifications.py."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import ROOT, Server, base_env, running_server
from tests.sse_client import login, open_stream, unique

pytest.importorskip("notifications", reason="django-notifications-community is not installed")
pytestmark = pytest.mark.server


def id2slug(pk: int) -> int:
    from notifications.utils import id2slug as slug

    return int(slug(pk))


SETTINGS = "tests.settings_notifications"


@contextmanager
def bridge(**env: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "notifications.sqlite3")
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=base_env(SSE_TEST_DB=db, DJANGO_SETTINGS_MODULE=SETTINGS),
            check=True,
            timeout=120,
        )
        with running_server(
            "uvicorn",
            SSE_TEST_DB=db,
            SSE_TEST_LAYER="memory",
            DJANGO_SETTINGS_MODULE=SETTINGS,
            **env,
        ) as server:
            yield server


@pytest.fixture(scope="module")
def bridge_server() -> Iterator[Server]:
    with bridge() as server:
        yield server


@pytest.fixture
async def two() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with httpx.AsyncClient(timeout=15.0) as a, httpx.AsyncClient(timeout=15.0) as b:
        yield a, b


async def signed_in(client: httpx.AsyncClient, server: Server) -> tuple[str, int]:
    name = unique("n")
    pk = await login(client, server.url, name)
    (await client.get(f"{server.url}/admin/login/")).raise_for_status()  # csrftoken
    return name, pk


async def call(client: httpx.AsyncClient, server: Server, path: str, body: Any) -> Any:
    response = await client.post(f"{server.url}{path}", content=json.dumps(body))
    response.raise_for_status()
    return response.json()


async def their_view(client: httpx.AsyncClient, server: Server, path: str) -> None:
    """One of the package's own views (mark_as_read, delete...), as a browser posts it."""
    response = await client.post(
        f"{server.url}/inbox/notifications/{path}",
        headers={"X-CSRFToken": client.cookies["csrftoken"]},
    )
    assert response.status_code == 302, response.text


def changes(events: list[Any]) -> list[tuple[str, int]]:
    return [(json.loads(e.data)["action"], json.loads(e.data)["unread"]) for e in events]


async def test_the_packages_own_api_and_views_publish_the_count(
    bridge_server: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = two
    alice, a_pk = await signed_in(a, bridge_server)
    bob, b_pk = await signed_in(b, bridge_server)
    url = f"{bridge_server.url}/sse/?channel=user:{a_pk}"
    async with (
        open_stream(a, url) as stream,
        open_stream(b, f"{bridge_server.url}/sse/?channel=user:{b_pk}") as bobs,
    ):
        sent = await call(
            a,
            bridge_server,
            "/test/notifications/send/",
            {"actor": bob, "recipients": [alice, bob], "verb": "<b>pinged</b> you"},
        )
        [new] = await stream.collect(1, name="live-notify")
        data = json.loads(new.data)
        assert data["action"] == "new" and data["unread"] == 1
        assert data["item"]["message"] == f"{bob} <b>pinged</b> you"
        mine = data["item"]["id"]
        assert mine in sent["ids"]
        await their_view(a, bridge_server, f"mark-as-read/{id2slug(mine)}/")
        await their_view(a, bridge_server, f"mark-as-unread/{id2slug(mine)}/")
        await call(
            a,
            bridge_server,
            "/test/notifications/bulk/",
            {"username": alice, "method": "mark_all_as_read"},
        )
        await call(
            a, bridge_server, "/test/notifications/send/", {"actor": bob, "recipients": [alice]}
        )
        await call(
            a, bridge_server, "/test/notifications/send/", {"actor": bob, "recipients": [alice]}
        )
        await their_view(a, bridge_server, f"delete/{id2slug(mine)}/")
        await call(
            a,
            bridge_server,
            "/test/notifications/bulk/",
            {"username": alice, "method": "mark_all_as_unread"},
        )
        await call(
            a, bridge_server, "/test/notifications/bulk/", {"username": alice, "method": "delete"}
        )
        got = await stream.collect(9, name="live-notify")
        # Bob heard of his own notification only.
        [bobs_new] = await bobs.collect(1, name="live-notify")
    assert changes(got) == [
        ("read", 0),
        ("unread", 1),
        ("sync", 0),
        ("new", 1),
        ("new", 2),
        ("delete", 2),
        ("sync", 2),
        # A queryset delete() runs post_delete after deleting every row: both say 0.
        ("delete", 0),
        ("delete", 0),
    ]
    assert json.loads(bobs_new.data)["unread"] == 1
    assert (await b.get(f"{bridge_server.url}/sse/notifications/count/")).json() == {"unread": 1}


async def test_the_bridge_endpoints_show_and_change_only_the_users_own(
    bridge_server: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = two
    alice, _ = await signed_in(a, bridge_server)
    bob, _ = await signed_in(b, bridge_server)
    theirs = (
        await call(
            a, bridge_server, "/test/notifications/send/", {"actor": alice, "recipients": [bob]}
        )
    )["ids"]
    mine = (
        await call(
            a, bridge_server, "/test/notifications/send/", {"actor": bob, "recipients": [alice]}
        )
    )["ids"]
    listed = (await a.get(f"{bridge_server.url}/sse/notifications/")).json()
    assert [item["id"] for item in listed["items"]] == mine
    headers = {"X-CSRFToken": a.cookies["csrftoken"]}
    for path in ("read/", "delete/"):
        response = await a.post(
            f"{bridge_server.url}/sse/notifications/{path}", json={"ids": theirs}, headers=headers
        )
        assert response.json()["changed"] == 0
    no_csrf = await a.post(f"{bridge_server.url}/sse/notifications/read/", json={"ids": mine})
    assert no_csrf.status_code == 403
    assert (await b.get(f"{bridge_server.url}/sse/notifications/count/")).json() == {"unread": 1}
    read = await a.post(
        f"{bridge_server.url}/sse/notifications/read/", json={"ids": mine}, headers=headers
    )
    assert read.json() == {"changed": 1, "unread": 0}
    async with httpx.AsyncClient(timeout=15.0) as anon:
        assert (await anon.get(f"{bridge_server.url}/sse/notifications/")).status_code == 403


async def test_a_plain_update_is_invisible_to_the_bridge(
    bridge_server: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """The documented limit: ``.update()`` sends no signal and nothing is published."""
    a, _ = two
    alice, a_pk = await signed_in(a, bridge_server)
    async with open_stream(a, f"{bridge_server.url}/sse/?channel=user:{a_pk}") as stream:
        await call(
            a, bridge_server, "/test/notifications/send/", {"actor": alice, "recipients": [alice]}
        )
        await stream.collect(1, name="live-notify")
        await call(
            a, bridge_server, "/test/notifications/bulk/", {"username": alice, "method": "update"}
        )
        await call(
            a, bridge_server, "/test/notifications/send/", {"actor": alice, "recipients": [alice]}
        )
        [after] = await stream.collect(1, name="live-notify")
    # The next change carries the truth anyway: 1, not 2.
    assert (json.loads(after.data)["action"], json.loads(after.data)["unread"]) == ("new", 1)


@requires_chromium
async def test_drop_in_badge_and_list_stay_live_without_polling(bridge_server: Server) -> None:
    pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    async with chromium() as browser:
        context = await browser.new_context()
        name = unique("nb")
        assert (await context.request.get(f"{bridge_server.url}/test/login/?username={name}")).ok
        polled: list[str] = []
        page = await context.new_page()
        page.on("request", lambda r: polled.append(r.url) if "/api/" in r.url else None)
        async with httpx.AsyncClient(timeout=15.0) as client:
            await call(
                client,
                bridge_server,
                "/test/notifications/send/",
                {"actor": name, "recipients": [name], "verb": "<img src=x onerror=alert(1)>"},
            )
            await page.goto(f"{bridge_server.url}/test/notifications/page/")
            badge = page.locator(".live_notify_badge")
            assert await badge.text_content() == "1"  # rendered server-side
            await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
            await page.wait_for_function("window.inboxChanges.length >= 1", timeout=TIMEOUT)
            sent = await call(
                client,
                bridge_server,
                "/test/notifications/send/",
                {"actor": name, "recipients": [name], "verb": "replied"},
            )
            await page.wait_for_function(
                "document.querySelector('.live_notify_badge').textContent === '2'", timeout=TIMEOUT
            )
            await page.wait_for_selector(
                f".live_notify_list li[data-id='{sent['ids'][0]}']", timeout=TIMEOUT
            )
            assert await page.locator(".live_notify_list img").count() == 0
            await call(
                client,
                bridge_server,
                "/test/notifications/bulk/",
                {"username": name, "method": "mark_all_as_read"},
            )
            await page.wait_for_function(
                "document.querySelector('.live_notify_badge').textContent === '0'", timeout=TIMEOUT
            )
            # An unread-only list: read items leave it.
            await page.wait_for_function(
                "!document.querySelector('.live_notify_list li[data-id]')", timeout=TIMEOUT
            )
        assert polled == []
        await context.close()


async def test_soft_deletes_are_deletes_and_restores_are_counted() -> None:
    with bridge(SSE_TEST_SOFT_DELETE="1") as server:
        async with httpx.AsyncClient(timeout=15.0) as a:
            alice, pk = await signed_in(a, server)
            async with open_stream(a, f"{server.url}/sse/?channel=user:{pk}") as stream:
                body = {"actor": alice, "recipients": [alice]}
                [first] = (await call(a, server, "/test/notifications/send/", body))["ids"]
                await call(a, server, "/test/notifications/send/", body)
                await their_view(a, server, f"delete/{id2slug(first)}/")
                assert (await a.get(f"{server.url}/sse/notifications/count/")).json() == {
                    "unread": 1
                }
                listed = (await a.get(f"{server.url}/sse/notifications/")).json()
                assert first not in [item["id"] for item in listed["items"]]
                bulk = {"username": alice, "method": "mark_all_as_deleted"}
                await call(a, server, "/test/notifications/bulk/", bulk)
                bulk = {"username": alice, "method": "mark_all_as_active"}
                await call(a, server, "/test/notifications/bulk/", bulk)
                got = await stream.collect(5, name="live-notify")
    assert changes(got) == [("new", 1), ("new", 2), ("delete", 1), ("sync", 0), ("sync", 2)]


async def test_a_large_fetch_renders_a_limit_the_list_endpoint_takes(
    bridge_server: Server,
) -> None:
    """``{% live_notify_list fetch=500 %}``: DjangoSSE.inbox refetches with the
    list's data-limit, which the endpoint must accept (at most 100)."""
    import re

    async with httpx.AsyncClient(timeout=15.0) as a:
        await signed_in(a, bridge_server)
        html = (await a.get(f"{bridge_server.url}/test/notifications/page/?fetch=500")).text
        [limit] = re.findall(r'data-sse-inbox-list[^>]*data-limit="(\d+)"', html)
        response = await a.get(f"{bridge_server.url}/sse/notifications/?limit={limit}&unread=1")
        assert response.status_code == 200, (limit, response.text)
