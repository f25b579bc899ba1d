"""The admin's Live page (``/sse/live/``) on real servers.

Who may see it, what it counts (one process on the in-memory layer; two
processes answering over a real Redis), which events it shows to whom, and
its publish form, which must refuse what the REST endpoint refuses.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import httpx
import pytest

from tests.ops_helpers import KIND_IDS, KINDS, csrf, memory_server, post_form, redis_env
from tests.servers import RedisServer, Server, running_server
from tests.sse_client import login, open_stream, publish, unique, wait_until

pytestmark = pytest.mark.server

LIVE = "/sse/live/"
VIEW_LIVE = "django_sse.view_live"
PUBLISH = "django_sse.publish_event"


@pytest.fixture(scope="module", params=KINDS, ids=KIND_IDS)
def site(request: pytest.FixtureRequest, server_db: str) -> Iterator[Server]:
    with memory_server(request.param, server_db) as srv:
        yield srv


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as c:
        yield c


def channel_count(page: str, channel: str) -> int | None:
    """The streams the page's busiest-channels table gives ``channel``."""
    match = re.search(rf">{re.escape(html.escape(channel))}</a></td><td>(\d+)</td>", page)
    return int(match.group(1)) if match else None


async def test_only_staff_with_the_permission_see_the_page(
    site: Server, client: httpx.AsyncClient
) -> None:
    anonymous = await client.get(site.url + LIVE)
    assert anonymous.status_code == 302
    assert anonymous.headers["location"].startswith("/admin/login/?next=/sse/live/")
    await login(client, site.url, unique("member"), perm=[VIEW_LIVE])
    not_staff = await client.get(site.url + LIVE)
    assert not_staff.status_code == 302
    await login(client, site.url, unique("staffer"), staff="1")
    without_permission = await client.get(site.url + LIVE)
    assert without_permission.status_code == 403
    await login(client, site.url, unique("operator"), staff="1", perm=[VIEW_LIVE])
    allowed = await client.get(site.url + LIVE)
    assert allowed.status_code == 200
    assert 'id="sse-total-streams"' in allowed.text
    # Logged out: back to the login page.
    async with httpx.AsyncClient(timeout=30.0, cookies=client.cookies) as other:
        (await other.get(f"{site.url}/test/logout/")).raise_for_status()
    assert (await client.get(site.url + LIVE)).status_code == 302
    await login(client, site.url, unique("operator"), staff="1", perm=[VIEW_LIVE])
    allowed = await client.get(site.url + LIVE)
    # No publish form without the publish permission, and its POST is refused.
    assert "sse-publish-form" not in allowed.text
    refused = await client.post(
        site.url + LIVE,
        data={"csrfmiddlewaretoken": csrf(allowed.text), "channel": "wall", "event": "m"},
        headers={"Referer": site.url + LIVE},
    )
    assert refused.status_code == 403
    assert "CSRF" not in refused.text  # refused for the permission, not the token


async def test_a_session_a_password_change_ended_is_sent_to_the_login(
    site: Server, client: httpx.AsyncClient
) -> None:
    name = unique("operator")
    await login(client, site.url, name, staff="1", perm=[VIEW_LIVE])
    assert (await client.get(site.url + LIVE)).status_code == 200
    # The same staff user, elsewhere, changes the password: this session ends.
    async with httpx.AsyncClient(timeout=30.0) as elsewhere:
        await login(elsewhere, site.url, name, staff="1")
        changed = await elsewhere.get(f"{site.url}/test/session/change-password/?update=1")
        changed.raise_for_status()
        assert (await elsewhere.get(site.url + LIVE)).status_code == 200
    stale = await client.get(site.url + LIVE)
    assert stale.status_code == 302
    assert stale.headers["location"].startswith("/admin/login/")


@pytest.mark.timeout(120)
async def test_like_the_admins_pages_it_is_never_cached_and_checks_csrf_itself(
    server_db: str, client: httpx.AsyncClient
) -> None:
    # Without Django's CSRF middleware, as the admin's own views would be.
    with memory_server(KINDS[0], server_db, SSE_TEST_NO_CSRF_MIDDLEWARE="1") as bare:
        await login(client, bare.url, unique("operator"), staff="1", perm=[VIEW_LIVE, PUBLISH])
        page = await client.get(bare.url + LIVE)
        assert page.status_code == 200
        # Channel names and payloads: no browser or proxy may keep a copy.
        cache = page.headers.get("cache-control", "")
        assert "no-store" in cache and "private" in cache, cache
        forged = await client.post(
            bare.url + LIVE,
            data={"channel": "wall", "event": "m", "payload": ""},
            headers={"Referer": bare.url + LIVE},
        )
        assert forged.status_code == 403
        assert "CSRF" in forged.text


async def test_the_page_counts_the_open_streams_of_a_channel(
    site: Server, client: httpx.AsyncClient
) -> None:
    channel = f"news:{unique('count')}"
    await login(client, site.url, unique("operator"), staff="1", perm=[VIEW_LIVE])
    async with httpx.AsyncClient(timeout=30.0) as readers, AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(
                open_stream(readers, f"{site.url}/sse/?channel={channel}")
            )
        page = (await client.get(site.url + LIVE)).text
        assert channel_count(page, channel) == 3
        total = int(re.search(r'id="sse-total-streams">(\d+)<', page).group(1))  # type: ignore[union-attr]
        assert total >= 3
        assert re.search(r'id="sse-processes">1<', page)
    # Closed: gone from the page.
    await wait_until(lambda: _absent(client, site, channel), timeout=10.0, interval=0.1)


async def _absent(client: httpx.AsyncClient, site: Server, channel: str) -> bool:
    return channel_count((await client.get(site.url + LIVE)).text, channel) is None


async def test_events_are_shown_only_for_channels_the_viewer_may_read(
    site: Server, client: httpx.AsyncClient
) -> None:
    secret = {"ssn": "078-05-1120"}
    await publish(client, site.url, "auditors", event="audit.secret", data=secret)
    await publish(
        client,
        site.url,
        "ticket:2",
        event="ticket.note",
        data="<script>alert(1)</script>",
        markup=True,
    )
    await login(client, site.url, unique("operator"), staff="1", perm=[VIEW_LIVE])
    # "auditors" needs auth.view_user, which this staff user lacks.
    hidden = (await client.get(site.url + LIVE, params={"channel": "auditors"})).text
    assert "events hidden: you may not read this channel" in hidden
    assert "078-05-1120" not in hidden and "audit.secret" not in hidden
    assert 'class="sse-event"' in hidden  # the events are there, their content is not
    # "ticket:2" is readable by authenticated users: shown, as text.
    shown = (await client.get(site.url + LIVE, params={"channel": "ticket:2"})).text
    assert "ticket.note" in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "<script>alert(1)</script>" not in shown
    # With the permission, the same page shows the secret channel.
    await login(client, site.url, unique("auditor"), staff="1", perm=[VIEW_LIVE, "auth.view_user"])
    allowed = (await client.get(site.url + LIVE, params={"channel": "auditors"})).text
    assert "078-05-1120" in allowed and "audit.secret" in allowed
    # Bad names get a reason, not an error page.
    bad = await client.get(site.url + LIVE, params={"channel": "no such<channel>"})
    assert bad.status_code == 200 and "sse-recent" in bad.text
    assert "<channel>" not in bad.text


async def test_the_publish_form_runs_the_rest_endpoints_checks(
    site: Server, client: httpx.AsyncClient
) -> None:
    await login(client, site.url, unique("publisher"), staff="1", perm=[VIEW_LIVE, PUBLISH])
    page = (await client.get(site.url + LIVE)).text
    assert "sse-publish-form" in page
    refusals = [
        ({"channel": "bulletin", "event": "m", "payload": ""}, "not allowed to publish"),
        ({"channel": "nowhere-registered", "event": "m", "payload": ""}, "matches no registered"),
        ({"channel": "wall", "event": "stream-closed", "payload": ""}, "reserved"),
        ({"channel": "wall", "event": "m", "payload": "{not json"}, "not JSON"),
        ({"channel": "bad name!", "event": "m", "payload": ""}, "channel"),
    ]
    for fields, reason in refusals:
        response = await post_form(client, site.url, fields)
        assert response.status_code == 200, fields
        assert reason in html.unescape(response.text), (fields, response.text[-3000:])
        assert "errorlist" in response.text
    async with open_stream(client, f"{site.url}/sse/?channel=wall") as stream:
        done = await post_form(
            client, site.url, {"channel": "wall", "event": "wall.post", "payload": '{"x": 1}'}
        )
        assert done.status_code == 302
        assert done.headers["location"] == "/sse/live/?channel=wall"
        [event] = await stream.collect(1)
    assert event.event == "wall.post" and json.loads(event.data) == {"x": 1}
    # Without the page's CSRF token: refused by Django's CSRF check.
    forged = await client.post(
        site.url + LIVE, data={"channel": "wall", "event": "m"}, headers={"Referer": site.url}
    )
    assert forged.status_code == 403


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_two_processes_answer_over_redis_and_an_outage_is_said(
    server_db: str, private_redis_server: RedisServer
) -> None:
    env = redis_env(server_db, private_redis_server.url)
    channel = f"news:{unique('two')}"
    with (
        running_server("daphne", **env, SSE_TEST_DOOR="view") as one,
        running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as two,
    ):
        async with httpx.AsyncClient(timeout=30.0) as client, AsyncExitStack() as stack:
            await login(client, one.url, unique("operator"), staff="1", perm=[VIEW_LIVE])
            for server, count in ((one, 2), (two, 3)):
                for _ in range(count):
                    await stack.enter_async_context(
                        open_stream(client, f"{server.url}/sse/?channel={channel}")
                    )
            page = (await client.get(one.url + LIVE)).text
            assert re.search(r'id="sse-processes">2<', page), page[-3000:]
            assert channel_count(page, channel) == 5
            private_redis_server.kill()
            down = await client.get(one.url + LIVE)
            assert down.status_code == 200
            assert 'id="sse-problem"' in down.text
            assert "channel layer" in down.text


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_crafted_stats_request_gets_no_answer_on_a_channel_not_the_pages(
    server_db: str, private_redis_server: RedisServer
) -> None:
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from django_sse import live
    from django_sse.membership import CONTROL_GROUP

    env = redis_env(server_db, private_redis_server.url)
    layer = RedisPubSubChannelLayer(hosts=[private_redis_server.url])
    with running_server("uvicorn", **env, SSE_TEST_DOOR="fast") as server:
        async with httpx.AsyncClient(timeout=30.0) as client:
            # A stream, so that the server's hub has joined the control group.
            async with open_stream(client, f"{server.url}/sse/?channel=news:{unique('x')}"):
                # Another consumer's channel, with the page's prefix inside its
                # name: an answer there is a message its consumer cannot handle.
                victim = await layer.new_channel(f"chat.{live.REPLY_PREFIX}")
                ours = await layer.new_channel(live.REPLY_PREFIX)
                try:
                    for reply in (victim, ours):
                        request = {"type": live.STATS_TYPE, "reply": reply, "request": "r"}
                        await layer.group_send(CONTROL_GROUP, request)
                    # The page's own channel is answered (the hub works) ...
                    answer = await asyncio.wait_for(layer.receive(ours), 10.0)
                    assert answer["type"] == live.REPLY_TYPE and answer["streams"] == 1
                    # ... the other one, asked first, is not.
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(layer.receive(victim), 1.0)
                finally:
                    await layer.flush()
