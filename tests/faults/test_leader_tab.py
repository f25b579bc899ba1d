"""The leader tab closed: of three tabs sharing one stream through the bundled
JS helper, the one holding the EventSource goes; every remaining tab keeps
getting its events, counted, including a follower's own event names."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.faults.harness import Counts, fault_env
from tests.servers import running_server
from tests.sse_client import unique

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.faults, pytest.mark.server, requires_chromium]

ROUND = 5  # events of each name before and after the leader goes

COUNT = """() => {
  window.faultGot = {message: [], special: []};
  DjangoSSE.on("message", (data) => window.faultGot.message.push(data.n));
}"""


async def send(http: httpx.AsyncClient, channel: str, event: str, n: int) -> None:
    body = {"channel": channel, "event": event, "data": {"n": n}}
    response = await http.post("/test/publish/", content=json.dumps(body))
    response.raise_for_status()


async def got(tab: Any) -> dict[str, list[int]]:
    return dict(await tab.evaluate("window.faultGot"))


async def wait_got(tab: Any, name: str, count: int) -> None:
    try:
        await tab.wait_for_function(
            "([name, n]) => window.faultGot[name].length >= n", arg=[name, count], timeout=TIMEOUT
        )
    except Exception:
        pass  # counted below: what is missing is reported as lost


@pytest.mark.timeout(120)
async def test_the_leader_tab_closed_every_remaining_tab_keeps_its_events(
    faults_db: str, record_counts: Callable[[Counts], Counts]
) -> None:
    channel = f"fault:{unique('tabs')}"
    counts = Counts("8 leader tab closed", "daphne+chromium")
    started = time.monotonic()
    with running_server("daphne", **fault_env(faults_db)) as server:
        async with chromium() as browser, httpx.AsyncClient(base_url=server.url) as http:
            context = await browser.new_context()
            tabs = []
            for _ in range(3):
                tab = await context.new_page()
                await tab.goto(f"{server.url}/test/page/?channel={channel}&retry=100")
                await tab.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
                await tab.evaluate(COUNT)
                tabs.append(tab)
            leaders = [await t.evaluate("DjangoSSE.connection.leader") for t in tabs]
            assert leaders.count(True) == 1, leaders
            leader = tabs.pop(leaders.index(True))
            # A follower listens for an event name of its own.
            special = tabs[-1]
            await special.evaluate(
                "DjangoSSE.on('special', (data) => window.faultGot.special.push(data.n))"
            )
            for n in range(ROUND):
                await send(http, channel, "message", n)
                await send(http, channel, "special", n)
            await wait_got(special, "special", ROUND)
            for tab in tabs:
                await wait_got(tab, "message", ROUND)

            await leader.close()
            for n in range(ROUND, 2 * ROUND):
                await send(http, channel, "message", n)
                await send(http, channel, "special", n)
            for tab in tabs:
                await wait_got(tab, "message", 2 * ROUND)
            await wait_got(special, "special", 2 * ROUND)
            seen = [await got(tab) for tab in tabs]

    counts.seconds = time.monotonic() - started
    counts.clients = len(tabs)
    counts.published = 4 * ROUND
    expected = list(range(2 * ROUND))
    wanted = [("message", i) for i in range(len(tabs))] + [("special", len(tabs) - 1)]
    for name, i in wanted:
        values = seen[i][name]
        counts.delivered += len(values)
        counts.lost += len(set(expected) - set(values))
        counts.duplicated += len(values) - len(set(values))
        counts.out_of_order += sum(b < a for a, b in itertools.pairwise(values))
    counts.note = "per remaining tab: " + "; ".join(f"{name}={seen[i][name]}" for name, i in wanted)
    record_counts(counts)
    assert counts.clean, counts.line()
