"""The bundled JS helper (django-sse.js) and its template tags, in a real Chromium.

The pages come from tests/testapp (``/test/page/``), served by a real daphne
process on the in-memory layer, with history in a shared SQLite file."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import Server, running_server
from tests.sse_client import wait_until

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]


@pytest.fixture(scope="module")
def page_server(server_db: str) -> Iterator[Server]:
    with running_server("daphne", SSE_TEST_DB=server_db, SSE_KEEPALIVE="0.5") as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


async def publish(
    server: Server,
    channel: str,
    data: Any,
    event: str = "message",
    *,
    markup: bool = False,
    count: int = 1,
) -> None:
    """Publish from inside the server; ``markup``: as a ``SafeString`` (``mark_safe``)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        body = {"channel": channel, "event": event, "data": data, "markup": markup, "count": count}
        response = await client.post("/test/publish/", content=json.dumps(body))
        response.raise_for_status()


async def wait_subscribers(server: Server, channel: str, expected: int) -> None:
    """Wait until the server holds ``expected`` streams on ``channel`` (a closed tab's
    stream takes a moment to be noticed)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

        async def holds() -> bool:
            response = await client.get("/test/stats/", params={"channel": channel})
            return bool(response.json()["subscribers"] == expected)

        await wait_until(holds, timeout=TIMEOUT / 1000)


async def open_page(context: Any, server: Server, query: str) -> Any:
    page = await context.new_page()
    await page.goto(f"{server.url}/test/page/?{query}")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    return page


async def logged(page: Any) -> list[Any]:
    texts = await page.locator("#log li").all_text_contents()
    return [json.loads(t) if t[:1] in "{[" else t for t in texts]


async def wait_logged(page: Any, count: int) -> list[Any]:
    await page.wait_for_function(
        "n => document.querySelectorAll('#log li').length >= n", arg=count, timeout=TIMEOUT
    )
    return await logged(page)


async def test_events_render_json_parsed_text_as_text_and_fragments_swap(
    browser: Any, page_server: Server
) -> None:
    page = await open_page(await browser.new_context(), page_server, "channel=news:render")
    # The state is on <html> and on every element that carries the attribute.
    assert await page.get_attribute("#status", "data-sse-state") == "open"

    await publish(page_server, "news:render", {"n": 1, "text": "é <b>"})
    await publish(page_server, "news:render", "plain <i>text</i>")
    await publish(
        page_server, "news:render", "<b class='hot'>swapped</b>", event="fragment", markup=True
    )
    await publish(page_server, "news:render", "<li>row 1</li>", event="row", markup=True)
    await publish(page_server, "news:render", "<li>row 2</li>", event="row", markup=True)

    assert await wait_logged(page, 2) == [{"n": 1, "text": "é <b>"}, "plain <i>text</i>"]
    await page.wait_for_selector("#swap b.hot", timeout=TIMEOUT)
    assert await page.text_content("#swap") == "swapped"
    await page.wait_for_function(
        "document.querySelectorAll('#appended li').length === 2", timeout=TIMEOUT
    )
    assert await page.locator("#appended li").all_text_contents() == ["row 1", "row 2"]


async def test_a_reload_resumes_from_session_storage_without_duplicates(
    browser: Any, page_server: Server
) -> None:
    channel = "news:reload"
    page = await open_page(await browser.new_context(), page_server, f"channel={channel}")
    for n in range(3):
        await publish(page_server, channel, {"n": n})
    assert await wait_logged(page, 3) == [{"n": 0}, {"n": 1}, {"n": 2}]

    # Away from the page (same tab, same origin) while two more are sent.
    await page.goto(f"{page_server.url}/test/stats/")
    for n in range(3, 5):
        await publish(page_server, channel, {"n": n})
    await page.goto(f"{page_server.url}/test/page/?channel={channel}")
    # The page was rendered after 3 and 4 were sent: only the tab's stored id brings them back.
    assert await wait_logged(page, 2) == [{"n": 3}, {"n": 4}]
    await publish(page_server, channel, {"n": 5})
    assert await wait_logged(page, 3) == [{"n": 3}, {"n": 4}, {"n": 5}]
    ids = await page.eval_on_selector_all("#log li", "els => els.map(e => e.dataset.id)")
    assert len(set(ids)) == 3

    await page.reload()
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    await publish(page_server, channel, {"n": 6})
    # Nothing already shown is replayed after a reload.
    assert await wait_logged(page, 1) == [{"n": 6}]


async def test_the_page_recovers_from_a_server_restart_without_losing_an_event(
    browser: Any, server_db: str
) -> None:
    channel = "news:restart"
    with running_server("daphne", SSE_TEST_DB=server_db, SSE_KEEPALIVE="0.5") as srv:
        page = await open_page(await browser.new_context(), srv, f"channel={channel}&retry=100")
        await publish(srv, channel, {"n": 0})
        assert await wait_logged(page, 1) == [{"n": 0}]

        srv.restart()
        # Sent before the page has reconnected: it must come from the replay.
        await publish(srv, channel, {"n": 1})
        await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
        await publish(srv, channel, {"n": 2})
        assert await wait_logged(page, 3) == [{"n": 0}, {"n": 1}, {"n": 2}]
        states = await page.evaluate("window.sseStates")
        assert "reconnecting" in states and states[-1] == "open"


async def test_a_denied_channel_shows_the_denied_state_and_stops(
    browser: Any, page_server: Server
) -> None:
    page = await (await browser.new_context()).new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/sse/" in r.url else None)
    await page.goto(f"{page_server.url}/test/page/?channel=staff&retry=50")
    await page.wait_for_selector("html[data-sse-state='denied']", timeout=TIMEOUT)
    assert await page.get_attribute("#status", "data-sse-state") == "denied"
    connection = await page.evaluate(
        "({status: DjangoSSE.connection.status, reason: DjangoSSE.connection.reason,"
        " timer: DjangoSSE.connection.timer})"
    )
    assert connection["status"] == 403
    assert "staff" in connection["reason"]
    assert connection["timer"] is None
    seen = len(requests)
    assert seen == 2  # the EventSource, then the probe that read the status
    # With a 50 ms retry base, a helper that kept retrying would have tried ~4 times by now.
    await page.wait_for_timeout(1000)
    assert len(requests) == seen


async def test_two_users_each_see_only_their_own_notifications(
    browser: Any, page_server: Server
) -> None:
    pages, pks = [], []
    for name in ("js-alice", "js-bob"):
        context = await browser.new_context()
        login = await context.request.get(f"{page_server.url}/test/login/?username={name}")
        pks.append((await login.json())["pk"])
        pages.append(await open_page(context, page_server, "channel=news:users"))

    for pk in pks:
        await publish(page_server, f"user:{pk}", {"message": f"for {pk}"}, event="notification")
    await publish(page_server, "news:users", {"message": "everyone"})
    for page, pk in zip(pages, pks, strict=True):
        # Both streams got the public event after the private ones were sent.
        assert await wait_logged(page, 2) == [{"message": f"for {pk}"}, {"message": "everyone"}]


async def test_eight_tabs_share_one_connection_and_stay_live(
    browser: Any, page_server: Server
) -> None:
    channel = "news:tabs"
    context = await browser.new_context()
    # More tabs than the six HTTP/1.1 connections a browser opens per origin.
    tabs = [await context.new_page() for _ in range(8)]
    for tab in tabs:
        await tab.goto(f"{page_server.url}/test/page/?channel={channel}")
    for tab in tabs:
        await tab.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    await wait_subscribers(page_server, channel, 1)

    await publish(page_server, channel, {"n": 1})
    for tab in tabs:
        assert await wait_logged(tab, 1) == [{"n": 1}]

    # The tab holding the connection goes: another takes over.
    leaders = [await tab.evaluate("DjangoSSE.connection.leader") for tab in tabs]
    assert leaders.count(True) == 1
    await tabs.pop(leaders.index(True)).close()
    await publish(page_server, channel, {"n": 2})
    for tab in tabs:
        assert await wait_logged(tab, 2) == [{"n": 1}, {"n": 2}]
    await wait_subscribers(page_server, channel, 1)


async def test_stream_reset_fires_an_event_the_page_can_reload_from(
    browser: Any, page_server: Server
) -> None:
    channel = "news:reset"
    context = await browser.new_context()
    # The tab "remembers" an id the server does not know: it must start afresh.
    await context.add_init_script(
        f"sessionStorage.setItem('django-sse:last-event-id:/sse/?{channel}', 'zzzzzzzz-9')"
    )
    page = await open_page(context, page_server, f"channel={channel}")
    await page.wait_for_function("window.sseResets.length === 1", timeout=TIMEOUT)
    assert await page.evaluate("window.sseResets") == ["unknown last event id"]
    assert (
        await page.evaluate(f"sessionStorage.getItem('django-sse:last-event-id:/sse/?{channel}')")
        is None
    )
    await publish(page_server, channel, {"n": 1})
    assert await wait_logged(page, 1) == [{"n": 1}]


async def test_close_ends_the_stream(browser: Any, page_server: Server) -> None:
    channel = "news:close"
    page = await open_page(await browser.new_context(), page_server, f"channel={channel}")
    await wait_subscribers(page_server, channel, 1)
    await page.evaluate("DjangoSSE.close()")
    assert await page.get_attribute("html", "data-sse-state") == "closed"
    await wait_subscribers(page_server, channel, 0)


async def test_5xx_answers_are_retried_with_back_off_until_the_stream_opens(
    browser: Any, page_server: Server
) -> None:
    channel = "news:flaky"
    page = await open_page(await browser.new_context(), page_server, "channel=news:other&own=0")
    # A connection of its own, through an endpoint that fails three times with 503.
    await page.evaluate(
        """() => {
          window.flakyStates = [];
          window.flaky = DjangoSSE.connect({
            url: "/test/flaky-stream/?fail=3&key=b1", channels: [arguments[0]],
            retryBase: 100, share: false,
          });
          window.flaky.on("message", (data) => { window.flakyData = data; });
          document.addEventListener("sse:state", (e) => window.flakyStates.push(e.detail));
        }""".replace("arguments[0]", json.dumps(channel))
    )
    await page.wait_for_function("window.flaky.state === 'open'", timeout=TIMEOUT)
    delays = await page.evaluate(
        "window.flakyStates.filter(s => s.state === 'reconnecting' && s.delay).map(s => s.delay)"
    )
    # Every failure is followed by one delay; the ceiling doubles each time (100, 200, 400 ms),
    # and each delay lies in its upper half.
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        ceiling = 100 * 2**attempt
        assert ceiling / 2 <= delay <= ceiling
    await publish(page_server, channel, {"n": 1})
    await page.wait_for_function("window.flakyData && window.flakyData.n === 1", timeout=TIMEOUT)


SCRIPT = '<img src=x onerror="window.xss = (window.xss || 0) + 1">'


@pytest.mark.parametrize(
    ("data", "markup", "shown"),
    [
        # A plain str (user input) is data: JSON on the wire, text in the page.
        (SCRIPT, False, SCRIPT),
        # A JSON document sent as a str stays that text, quotes included.
        (json.dumps(SCRIPT), False, json.dumps(SCRIPT)),
        # Markup that is valid JSON (a JSON string) is parsed, and a JSON string is text.
        (json.dumps(SCRIPT), True, SCRIPT),
    ],
    ids=["plain-str", "json-dumps-str", "safe-json-string"],
)
async def test_only_markup_marked_safe_is_swapped_as_html(
    browser: Any, page_server: Server, data: str, markup: bool, shown: str
) -> None:
    channel = "news:xss"
    page = await open_page(await browser.new_context(), page_server, f"channel={channel}")
    await publish(page_server, channel, data, event="fragment", markup=markup)
    await publish(page_server, channel, data, event="row", markup=markup)
    await publish(page_server, channel, data, markup=markup)
    await wait_logged(page, 1)
    await page.wait_for_function(
        "document.querySelector('#appended').textContent.length > 0", timeout=TIMEOUT
    )
    assert await page.locator("img").count() == 0
    assert await page.text_content("#swap") == shown
    assert await page.text_content("#appended") == shown
    assert await logged(page) == [shown]
    await wait_for_sentinel(page_server, channel, page)
    assert await page.evaluate("window.xss") is None


async def wait_for_sentinel(server: Server, channel: str, page: Any) -> None:
    """Append a broken image marked safe and wait for its error handler: one
    that an earlier payload had put in the page would have run by then too."""
    sentinel = '<li><img src=x onerror="window.sentinel = 1"></li>'
    await publish(server, channel, sentinel, event="row", markup=True)
    await page.wait_for_function("window.sentinel === 1", timeout=TIMEOUT)


async def test_markup_marked_safe_runs_as_markup_which_is_why_it_takes_a_safestring(
    browser: Any, page_server: Server
) -> None:
    # The control for the test above: the same payload, marked safe, is markup.
    page = await open_page(await browser.new_context(), page_server, "channel=news:xss-control")
    await publish(page_server, "news:xss-control", SCRIPT, event="fragment", markup=True)
    await page.wait_for_function("window.xss === 1", timeout=TIMEOUT)
    assert await page.locator("#swap img").count() == 1


async def test_two_identical_ephemeral_events_are_both_delivered(
    browser: Any, page_server: Server
) -> None:
    # With a stored channel in the stream, ephemeral events repeat the stream's position id.
    channel = "typing:js-dedupe"
    query = f"channel={channel}&channel=news:js-dedupe"
    page = await open_page(await browser.new_context(), page_server, query)
    await publish(page_server, "news:js-dedupe", {"stored": 1})
    assert await wait_logged(page, 1) == [{"stored": 1}]
    await page.evaluate("document.getElementById('log').replaceChildren()")
    await publish(page_server, channel, {"typing": "ann"}, count=2)
    await publish(page_server, channel, {"typing": "bob"})
    assert await wait_logged(page, 3) == [{"typing": "ann"}, {"typing": "ann"}, {"typing": "bob"}]
    ids = await page.eval_on_selector_all("#log li", "els => els.map(e => e.dataset.id)")
    assert ids[0] == ids[1]  # same id, same data: still two events


async def test_stream_closed_without_reconnect_stops_the_helper(
    browser: Any, page_server: Server
) -> None:
    context = await browser.new_context()
    await context.request.get(f"{page_server.url}/test/login/?username=js-revoked")
    page = await context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/sse/" in r.url else None)
    await page.goto(f"{page_server.url}/test/page/?channel=news:revoked&retry=50")
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    assert len(requests) == 1

    response = await context.request.get(f"{page_server.url}/test/revoke/?username=js-revoked")
    assert response.ok
    await page.wait_for_selector("html[data-sse-state='revoked']", timeout=TIMEOUT)
    await wait_subscribers(page_server, "news:revoked", 0)
    # With a 50 ms retry base, a helper that came back would have tried several times by now.
    await page.wait_for_timeout(1500)
    assert await page.get_attribute("html", "data-sse-state") == "revoked"
    assert len(requests) == 1
    assert await page.evaluate("DjangoSSE.connection.timer") is None


async def test_a_new_leader_streams_the_events_every_tab_listens_for(
    browser: Any, page_server: Server
) -> None:
    channel = "news:handover"
    context = await browser.new_context()
    tabs = []
    for _ in range(3):
        tab = await context.new_page()
        await tab.goto(f"{page_server.url}/test/page/?channel={channel}&own=0")
        await tab.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
        tabs.append(tab)
    one, two, three = tabs
    assert await one.evaluate("DjangoSSE.connection.leader") is True
    # Only the third tab listens for "special".
    await three.evaluate(
        "window.special = []; DjangoSSE.on('special', (data) => window.special.push(data))"
    )
    await publish(page_server, channel, {"n": 1}, event="special")
    await three.wait_for_function("window.special.length === 1", timeout=TIMEOUT)

    # The leader goes; the second tab (next in the lock's queue) takes over.
    await one.close()
    await two.wait_for_function("DjangoSSE.connection.leader === true", timeout=TIMEOUT)
    await two.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
    await wait_subscribers(page_server, channel, 1)
    await publish(page_server, channel, {"n": 2}, event="special")
    await publish(page_server, channel, {"n": 3})
    await three.wait_for_function("window.special.length === 2", timeout=TIMEOUT)
    assert await three.evaluate("window.special") == [{"n": 1}, {"n": 2}]
    for tab in (two, three):
        assert await wait_logged(tab, 1) == [{"n": 3}]


async def test_retry_after_of_a_429_is_honoured(browser: Any, page_server: Server) -> None:
    page = await open_page(await browser.new_context(), page_server, "channel=news:other&own=0")
    key = f"ra-{id(page)}"
    await page.evaluate(
        """(key) => {
          window.busy = DjangoSSE.connect({
            url: "/test/js/busy/?after=2&key=" + key, channels: ["news:busy"],
            retryBase: 50, share: false,
          });
        }""",
        key,
    )
    async with httpx.AsyncClient(base_url=page_server.url, timeout=10) as client:

        async def times() -> list[float]:
            response = await client.get("/test/js/attempts/", params={"key": key})
            return list(response.json()["times"])

        # The first attempt is the EventSource and the probe that read the status.
        await wait_until(lambda: _at_least(times, 3), timeout=TIMEOUT / 1000)
        got = await times()
    assert got[1] < 1.0
    # With a 50 ms retry base the next attempt would come within ~50 ms; the server said 2 s.
    assert got[2] >= 2.0, got
    status = await page.evaluate("({state: window.busy.state, status: window.busy.status})")
    assert status == {"state": "reconnecting", "status": 429}


async def _at_least(times: Any, n: int) -> bool:
    return len(await times()) >= n


async def test_refused_connections_back_off_with_jitter(browser: Any, page_server: Server) -> None:
    # A port that reads the request and hangs up, as a server going down does; it
    # counts the EventSource's connection attempts (the helper's status probe
    # after each one asks for */*).
    accepted: list[float] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.read(4096)
        if b"accept: text/event-stream" in head.lower():
            accepted.append(time.monotonic())
        writer.close()

    dead = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = dead.sockets[0].getsockname()[1]
    try:
        page = await open_page(await browser.new_context(), page_server, "channel=news:o&own=0")
        await page.evaluate(
            """(port) => {
              window.delays = [];
              document.addEventListener("sse:state", (e) => {
                if (e.detail.delay != null) window.delays.push(e.detail.delay);
              });
              window.dead = DjangoSSE.connect({
                url: "http://127.0.0.1:" + port + "/sse/", channels: ["news:dead"],
                retryBase: 100, retryMax: 800, share: false,
              });
            }""",
            port,
        )

        await wait_until(lambda: len(accepted) >= 6, timeout=TIMEOUT / 1000)
        starts = list(accepted)
        delays = await page.evaluate("window.delays")
    finally:
        dead.close()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    for n, gap in enumerate(gaps[:5]):
        ceiling = min(0.8, 0.1 * 2**n)
        # Drawn from the upper half of the doubling ceiling (plus the probe's round trip
        # on a loaded machine; the browser on its own waits 3 s).
        assert ceiling / 2 <= gap <= ceiling + 0.6, (n, gaps)
    assert len(delays) >= 5
    # Jitter: the delays are drawn, not the bare ceilings.
    ceilings = [100, 200, 400, 800, 800]
    assert all(c / 2 <= d <= c for c, d in zip(ceilings, delays, strict=False))
    assert any(d != c for c, d in zip(ceilings, delays, strict=False))


async def test_htmx_swaps_markup_but_a_plain_str_runs_nothing(
    browser: Any, page_server: Server
) -> None:
    # htmx's sse-swap inserts every payload as HTML: JSON must hold no markup.
    channel = "news:htmx-xss"
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{page_server.url}/test/js/htmx/?channel={channel}")
    await page.wait_for_function("window.htmxSseOpen === true", timeout=TIMEOUT)
    await wait_subscribers(page_server, channel, 1)
    await publish(page_server, channel, SCRIPT, event="fragment")
    await page.wait_for_function(
        "document.querySelector('#swap').textContent.length > 0", timeout=TIMEOUT
    )
    assert await page.locator("#swap img").count() == 0
    # A broken image marked safe: once its error handler ran, an earlier one would have.
    sentinel = '<img src=x onerror="window.sentinel = 1">'
    await publish(page_server, channel, sentinel, event="fragment", markup=True)
    await page.wait_for_function("window.sentinel === 1", timeout=TIMEOUT)
    assert await page.evaluate("window.xss") is None
    await publish(
        page_server, channel, "<b class='hot'>fragment</b>", event="fragment", markup=True
    )
    await page.wait_for_selector("#swap b.hot", timeout=TIMEOUT)


async def test_a_200_that_is_not_an_event_stream_is_a_refusal(
    browser: Any, page_server: Server
) -> None:
    page = await open_page(await browser.new_context(), page_server, "channel=news:o&own=0")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/test/js/login/" in r.url else None)
    # An HTML page where a stream was expected (a proxy's sign-in page, a wrong URL).
    await page.evaluate(
        """() => {
          window.html = DjangoSSE.connect({
            url: "/test/js/login/", channels: ["news:x"], retryBase: 50, share: false,
          });
        }"""
    )
    await page.wait_for_function("window.html.state === 'denied'", timeout=TIMEOUT)
    assert await page.evaluate("window.html.status") == 200
    assert (
        await page.evaluate("window.html.reason")
        == "not an event stream (text/html; charset=utf-8)"
    )
    seen = len(requests)
    assert seen == 2  # the EventSource and the probe
    await page.wait_for_timeout(800)  # a window in which a retrying helper would try ~4 times
    assert len(requests) == seen


async def test_an_event_named_error_or_open_is_not_taken_for_the_connection(
    browser: Any, page_server: Server
) -> None:
    # EventSource hands an event the server named "error" (or "open") to its
    # own onerror (onopen) handler. Publishing those names is refused, but a
    # stream may still carry one (history from an older version, another
    # server): the helper must not take it for a dropped connection and loop.
    page = await open_page(await browser.new_context(), page_server, "channel=news:names")
    await page.evaluate(
        """() => {
          const source = DjangoSSE.connection.source;
          window.sourceBefore = source;
          source.dispatchEvent(new MessageEvent("error", {data: '{"job": 1}'}));
          source.dispatchEvent(new MessageEvent("open", {data: '{"job": 2}'}));
        }"""
    )
    await publish(page_server, "news:names", {"n": 1})
    assert await wait_logged(page, 1) == [{"n": 1}]
    assert await page.evaluate("DjangoSSE.connection.source === window.sourceBefore")
    assert "reconnecting" not in await page.evaluate("window.sseStates")
