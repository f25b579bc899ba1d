"""A staff edit in the admin of a real server reaches a user's open stream."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.servers import Server
from tests.sse_client import login, open_stream

pytestmark = pytest.mark.server

TICKETS = "/admin/testapp/ticket/"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as c:
        yield c


async def submit(client: httpx.AsyncClient, url: str, data: dict[str, str]) -> httpx.Response:
    """Post an admin form the way a browser does: with the page's CSRF token."""
    page = await client.get(url)
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None
    return await client.post(
        url, data={"csrfmiddlewaretoken": token.group(1), **data}, headers={"Referer": url}
    )


async def test_a_ticket_changed_in_the_admin_appears_on_an_open_stream(
    server: Server, client: httpx.AsyncClient
) -> None:
    perms = ["testapp.add_ticket", "testapp.change_ticket", "testapp.view_ticket"]
    await login(client, server.url, "desk-admin", staff="1", perm=perms)
    pk = 1
    while pk % 2:  # the test project lets authenticated users read even ticket pks
        added = await submit(
            client,
            f"{server.url}{TICKETS}add/",
            {"title": "Printer", "status": "open", "_continue": "1"},
        )
        assert added.status_code == 302, added.text[:500]
        match = re.search(r"/ticket/(\d+)/change/", added.headers["location"])
        assert match is not None
        pk = int(match.group(1))

    async with open_stream(client, f"{server.url}/sse/?channel=ticket:{pk}") as stream:
        changed = await submit(
            client, f"{server.url}{TICKETS}{pk}/change/", {"title": "Printer", "status": "fixed"}
        )
        assert changed.status_code == 302, changed.text[:500]
        [event] = await stream.collect(1)
    assert event.event == "testapp.ticket.updated"
    assert json.loads(event.data) == {
        "pk": pk,
        "title": "Printer",
        "status": "fixed",
        "owner": None,
    }
