"""The inbox endpoints through a real uvicorn process: a user only ever sees and
changes their own items, whatever the endpoint, the id or the credentials."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.servers import Server, running_server
from tests.sse_client import login, open_stream, unique

pytestmark = pytest.mark.server

ENDPOINTS = [
    ("GET", "inbox/"),
    ("GET", "inbox/count/"),
    ("POST", "inbox/read/"),
    ("POST", "inbox/read-all/"),
    ("POST", "inbox/delete/"),
]


@pytest.fixture(scope="module")
def srv(server_db: str) -> Iterator[Server]:
    with running_server("uvicorn", SSE_TEST_DB=server_db, SSE_TEST_LAYER="memory") as server:
        yield server


@pytest.fixture
async def two() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with httpx.AsyncClient(timeout=15.0) as a, httpx.AsyncClient(timeout=15.0) as b:
        yield a, b


async def as_user(client: httpx.AsyncClient, srv: Server) -> str:
    name = unique("u")
    await login(client, srv.url, name)
    (await client.get(f"{srv.url}/admin/login/")).raise_for_status()  # the csrftoken cookie
    return name


async def notify(client: httpx.AsyncClient, srv: Server, username: str, **body: Any) -> list[int]:
    response = await client.post(
        f"{srv.url}/test/inbox/notify/", json={"username": username, **body}
    )
    response.raise_for_status()
    return list(response.json()["ids"])


async def post(
    client: httpx.AsyncClient, srv: Server, path: str, *, csrf: bool = True, **kwargs: Any
) -> httpx.Response:
    headers = {"X-CSRFToken": client.cookies["csrftoken"]} if csrf else {}
    headers.update(kwargs.pop("headers", {}))
    return await client.post(f"{srv.url}/sse/{path}", headers=headers, **kwargs)


async def test_a_cannot_list_read_mark_or_delete_bs_items(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = two
    a_name, b_name = await as_user(a, srv), await as_user(b, srv)
    mine = await notify(a, srv, a_name, count=2)
    theirs = await notify(a, srv, b_name, count=3, message="secret {n}")
    listed = (await a.get(f"{srv.url}/sse/inbox/")).json()
    assert [item["id"] for item in listed["items"]] == mine[::-1]
    assert "secret" not in json.dumps(listed)
    # Every id there is, guessed: only A's own change.
    guesses = {"ids": list(range(1, max(theirs) + 5))}
    read = await post(a, srv, "inbox/read/", json=guesses)
    assert read.status_code == 200 and read.json() == {"changed": 2, "unread": 0}
    deleted = await post(a, srv, "inbox/delete/", data={"ids": [str(i) for i in theirs]})
    assert deleted.json() == {"changed": 0, "unread": 0}
    assert (await post(a, srv, "inbox/read-all/")).json()["changed"] == 0
    for before in (max(theirs) + 1, ""):
        page = (await a.get(f"{srv.url}/sse/inbox/", params={"before": before})).json()
        assert {item["id"] for item in page["items"]} <= set(mine)
    # B's items are all there, unread.
    b_list = (await b.get(f"{srv.url}/sse/inbox/")).json()
    assert [item["id"] for item in b_list["items"]] == theirs[::-1]
    assert b_list["unread"] == 3
    assert (await b.get(f"{srv.url}/sse/inbox/count/")).json() == {"unread": 3}
    assert all(item["read_at"] is None for item in b_list["items"])


async def test_anonymous_is_refused_everywhere(srv: Server) -> None:
    async with httpx.AsyncClient(timeout=15.0) as anon:
        for method, path in ENDPOINTS:
            response = await anon.request(method, f"{srv.url}/sse/{path}", data={"ids": ["1"]})
            assert response.status_code == 403, (path, response.text)
            assert "log in" in response.text
            assert "\n" not in response.text.strip()


async def test_a_session_post_without_csrf_is_refused(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, _ = two
    name = await as_user(a, srv)
    [item] = await notify(a, srv, name)
    for path in ("inbox/read/", "inbox/read-all/", "inbox/delete/"):
        response = await post(a, srv, path, csrf=False, data={"ids": [str(item)]})
        assert response.status_code == 403, (path, response.text)
        assert "CSRF" in response.text
    forged = await post(
        a,
        srv,
        "inbox/read/",
        csrf=False,
        data={"ids": [str(item)]},
        headers={"X-CSRFToken": "x" * 32},
    )
    assert forged.status_code == 403
    assert (await a.get(f"{srv.url}/sse/inbox/count/")).json() == {"unread": 1}


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"ids": ["abc"]}},
        {"data": {"ids": ["-1"]}},
        {"data": {"ids": ["0"]}},
        {"data": {"ids": ["1 "]}},
        {"data": {"ids": ["99999999999999999999"]}},
        {"data": {"ids": ["9999999999999999999"]}},
        {"data": {"ids": [""]}},
        {"data": {}},
        {"json": {"ids": "1"}},
        {"json": {"ids": [True]}},
        {"json": {"ids": [1.5]}},
        {"json": [1, 2]},
        {"json": {"ids": list(range(1, 1100))}},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"content": b"[" * 100_000, "headers": {"Content-Type": "application/json"}},
    ],
)
async def test_bad_ids_are_a_400_with_a_reason(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient], body: dict[str, Any]
) -> None:
    a, _ = two
    await as_user(a, srv)
    for path in ("inbox/read/", "inbox/delete/"):
        response = await post(a, srv, path, **body)
        assert response.status_code == 400, (path, response.text)
        assert len(response.text.strip().splitlines()) == 1


async def test_bad_list_parameters_are_a_400(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, _ = two
    await as_user(a, srv)
    for params in (
        {"before": "x"},
        {"limit": "1000"},
        {"limit": "-1"},
        {"before": "1e3"},
        {"before": "9999999999999999999"},
    ):
        response = await a.get(f"{srv.url}/sse/inbox/", params=params)
        assert response.status_code == 400, params


async def test_pages_follow_the_cursor_without_gaps_or_repeats(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, _ = two
    name = await as_user(a, srv)
    ids = await notify(a, srv, name, count=25)
    seen: list[int] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 10, **({"before": before} if before else {})}
        page = (await a.get(f"{srv.url}/sse/inbox/", params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        before = page["next"]
        if before is None:
            break
    assert seen == ids[::-1]
    await post(a, srv, "inbox/read/", data={"ids": [str(ids[0])]})
    unread = (await a.get(f"{srv.url}/sse/inbox/", params={"unread": "1", "limit": 100})).json()
    assert len(unread["items"]) == 24 and unread["unread"] == 24
    response = await a.get(f"{srv.url}/sse/inbox/count/")
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_rest_framework_token_needs_no_csrf(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, _ = two
    name = unique("api")
    token = (await a.get(f"{srv.url}/test/drf-token/", params={"username": name})).json()["key"]
    [item] = await notify(a, srv, name)
    async with httpx.AsyncClient(timeout=15.0, headers={"Authorization": f"Token {token}"}) as api:
        assert (await api.get(f"{srv.url}/sse/inbox/count/")).json() == {"unread": 1}
        response = await api.post(f"{srv.url}/sse/inbox/read/", json={"ids": [item]})
        assert response.json() == {"changed": 1, "unread": 0}
    async with httpx.AsyncClient(timeout=15.0, headers={"Authorization": "Token nope"}) as bad:
        assert (await bad.get(f"{srv.url}/sse/inbox/count/")).status_code == 403


async def test_every_change_reaches_the_users_stream_with_the_count(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = two
    name = await as_user(a, srv)
    pk = await login(a, srv.url, name)
    await as_user(b, srv)
    async with open_stream(a, f"{srv.url}/sse/?channel=user:{pk}") as stream:
        ids = await notify(a, srv, name, count=3, message="<b>hi</b> {n}")
        news = await stream.collect(3, name="notification")
        assert [json.loads(e.data)["unread"] for e in news] == [1, 2, 3]
        assert json.loads(news[0].data)["message"] == "<b>hi</b> 0"
        await post(a, srv, "inbox/read/", data={"ids": [str(ids[0])]})
        await post(a, srv, "inbox/delete/", data={"ids": [str(ids[1])]})
        await post(a, srv, "inbox/read-all/")
        # B's attempts on A's items change nothing and publish nothing.
        await post(b, srv, "inbox/read/", data={"ids": [str(i) for i in ids]})
        await notify(a, srv, name, message="last")
        got = await stream.collect(4)
    assert [
        (e.event, json.loads(e.data).get("action"), json.loads(e.data)["unread"]) for e in got
    ] == [
        ("inbox", "read", 2),
        ("inbox", "delete", 1),
        ("inbox", "read_all", 0),
        ("notification", None, 1),
    ]


async def test_a_javascript_url_is_refused_before_anything_is_kept(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, _ = two
    name = await as_user(a, srv)
    response = await a.post(
        f"{srv.url}/test/inbox/notify/", json={"username": name, "url": "javascript:alert(1)"}
    )
    assert response.status_code == 500  # the test view does not catch the ValueError
    assert (await a.get(f"{srv.url}/sse/inbox/count/")).json() == {"unread": 0}


async def test_a_logged_out_session_is_refused(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, _ = two
    name = await as_user(a, srv)
    [item] = await notify(a, srv, name)
    old_cookies = dict(a.cookies)
    (await a.get(f"{srv.url}/test/logout/")).raise_for_status()
    async with httpx.AsyncClient(timeout=15.0, cookies=old_cookies) as replay:
        # The session cookie from before the logout, replayed.
        assert (await replay.get(f"{srv.url}/sse/inbox/")).status_code == 403
        response = await replay.post(
            f"{srv.url}/sse/inbox/read/",
            data={"ids": [str(item)]},
            headers={"X-CSRFToken": old_cookies["csrftoken"]},
        )
        assert response.status_code == 403


async def test_a_session_whose_password_changed_elsewhere_is_refused(
    srv: Server, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, admin = two
    name = await as_user(a, srv)
    [item] = await notify(a, srv, name)
    assert (await a.get(f"{srv.url}/sse/inbox/count/")).json() == {"unread": 1}
    response = await admin.get(f"{srv.url}/test/session/set-password/", params={"username": name})
    response.raise_for_status()
    # The same cookies, now of a session whose password hash no longer matches.
    assert (await a.get(f"{srv.url}/sse/inbox/")).status_code == 403
    assert (await a.get(f"{srv.url}/sse/inbox/count/")).status_code == 403
    for path in ("inbox/read/", "inbox/delete/", "inbox/read-all/"):
        response = await post(a, srv, path, data={"ids": [str(item)]})
        assert response.status_code == 403, (path, response.text)
    await login(a, srv.url, name)  # logged in again: the item is untouched
    listed = (await a.get(f"{srv.url}/sse/inbox/")).json()["items"]
    assert [(i["id"], i["read_at"]) for i in listed] == [(item, None)]
