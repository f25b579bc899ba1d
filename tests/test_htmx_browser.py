"""The example's htmx pages in a real Chromium, with htmx 2.0 + htmx-ext-sse 2.2
(EventSource) and with htmx 4.0 + hx-sse (fetch): swaps, reconnect with resume
after a server restart, stop on a refusal, and the debounced list refresh."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium
from tests.servers import EXAMPLE, Server, example_shell, running_example, stop
from tests.test_example_browser import change_ticket, logged_in, solve_in_bulk, ticket_pk

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]

#: The example's page for each htmx version.
PAGES = {"htmx2": "htmx", "htmx4": "htmx4"}
#: Milliseconds a reconnection may take: htmx 4 backs off from the server's
#: ``retry:`` (3 s) and doubles it per failed attempt while the server is down.
RECONNECT_TIMEOUT = 45_000
# Marks an open stream on the page: htmx 2's extension and htmx 4's.
OPEN_FLAG = """
for (const name of ["htmx:sseOpen", "htmx:sse:after:connection"]) {
  document.addEventListener(name, () => { window.sseOpens = (window.sseOpens || 0) + 1; });
}
document.addEventListener("htmx:sse:close", () => { window.sseClosed = true; });
"""


@pytest.fixture(scope="module")
def example() -> Iterator[Server]:
    with running_example() as server:
        yield server


async def htmx_page(browser: Any, base: str, version: str, username: str = "bob") -> Any:
    """``username``'s first ticket on the htmx page of ``version``, its stream open;
    the requests of the ticket's stream are listed in ``page.stream_requests``."""
    page = await logged_in(browser, base, username, "/tickets/")
    pk = await ticket_pk(page, "Export to CSV is empty")
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r) if "channel=ticket" in r.url else None)
    page.stream_requests = requests
    page.ticket = pk
    await page.add_init_script(OPEN_FLAG)
    await page.goto(f"{base}/tickets/{pk}/{PAGES[version]}/")
    await page.wait_for_function("window.sseOpens >= 1", timeout=TIMEOUT)
    return page


def save_ticket_elsewhere(server: Server, pk: int, reply: str) -> None:
    """Change the ticket from another process (a worker, the shell): stored, so
    a stream that was away gets it when it resumes."""
    example_shell(
        server,
        "from helpdesk.models import Ticket; "
        f"t = Ticket.objects.get(pk={pk}); t.reply = {reply!r}; t.save()",
    )


@pytest.mark.parametrize("version", PAGES)
async def test_a_change_is_swapped_in(example: Server, version: str) -> None:
    async with chromium() as browser:
        page = await htmx_page(browser, example.url, version)
        staff = await logged_in(browser, example.url, "admin", "/admin/", streaming=False)
        reply = f"Fixed for {version}, <b>really</b>."
        await change_ticket(staff, example.url, page.ticket, "solved", reply)
        await page.locator("#htmx-target .reply", has_text=reply).wait_for(timeout=TIMEOUT)
        assert await page.text_content("#htmx-target .pill") == "Solved"
        # Rendered with auto-escaping: the reply's markup is text.
        assert await page.locator("#htmx-target .reply b").count() == 0


@pytest.mark.parametrize("version", PAGES)
async def test_reconnects_after_a_restart_and_resumes_with_last_event_id(
    example: Server, version: str
) -> None:
    async with chromium() as browser:
        page = await htmx_page(browser, example.url, version)
        staff = await logged_in(browser, example.url, "admin", "/admin/", streaming=False)
        await change_ticket(staff, example.url, page.ticket, "pending", f"Before, {version}")
        await page.locator("#htmx-target .reply", has_text="Before").wait_for(timeout=TIMEOUT)
        first = len(page.stream_requests)

        stop(example.proc)  # a deploy: the stream drops, the server is away
        save_ticket_elsewhere(example, page.ticket, f"While you were away, {version}")
        example.start()

        # Saved while no stream was open, so only a resumed stream replays it:
        # a new one starts from now.
        await page.locator("#htmx-target .reply", has_text="While you were away").wait_for(
            timeout=RECONNECT_TIMEOUT
        )
        if version == "htmx4":
            # hx-sse re-fetches with the id of the last event it saw as a header
            # (EventSource does the same inside the browser's network stack,
            # where the page sees no new request).
            resumed = page.stream_requests[first:]
            assert resumed, [r.headers for r in page.stream_requests]
            assert resumed[-1].headers.get("last-event-id"), resumed[-1].headers
            assert "lastEventId" not in resumed[-1].url


@pytest.mark.parametrize("version", PAGES)
async def test_a_refusal_on_reconnect_stops_the_retries(example: Server, version: str) -> None:
    async with chromium() as browser:
        page = await htmx_page(browser, example.url, version)
        # Logged out in another tab: the server ends the stream ("logged out",
        # reconnect false), and the reconnection is refused with 403.
        other = await page.context.new_page()
        await other.goto(f"{example.url}/tickets/")
        await other.click("form[action='/accounts/logout/'] button[type=submit]")
        if version == "htmx4":
            await page.wait_for_function("window.sseClosed === true", timeout=RECONNECT_TIMEOUT)
            assert await page.get_attribute("#htmx-stream", "data-sse-stopped") == "403"
        else:
            await page.wait_for_selector(
                "#htmx-stream[data-sse-stopped='403']:not([sse-connect])",
                timeout=RECONNECT_TIMEOUT,
            )
        refused = page.stream_requests[-1]
        answer = await refused.response()
        assert answer is not None and answer.status == 403
        # The page keeps what it showed; nothing of the refusal was swapped in.
        assert await page.locator("#htmx-target .pill").count() == 1


MORE_TICKETS = """
from django.contrib.auth import get_user_model
from django_sse import hooks
from helpdesk.models import Ticket
bob = get_user_model().objects.get(username="bob")
with hooks.silenced():
    Ticket.objects.bulk_create(Ticket(customer=bob, title=f"More {n}") for n in range(30))
"""
REFRESHES = """
from django.contrib.auth import get_user_model
from django_sse.models import StoredEvent
bob = get_user_model().objects.get(username="bob")
rows = StoredEvent.objects.filter(channel=f"customer:{bob.pk}", name="helpdesk.ticket.refresh")
print(rows.count())
"""


def refreshes(server: Server) -> int:
    return int(example_shell(server, REFRESHES).split()[-1])


@pytest.mark.parametrize("version", PAGES)
async def test_a_bulk_edit_refetches_the_rows_once(example: Server, version: str) -> None:
    example_shell(example, MORE_TICKETS)
    async with chromium() as browser:
        page = await htmx_page(browser, example.url, version)
        before = refreshes(example)
        fetches = await solve_in_bulk(browser, example.url, "bob", page)
        await page.wait_for_function(
            "[...document.querySelectorAll('#htmx-rows .pill')].every("
            "p => p.classList.contains('solved'))",
            timeout=TIMEOUT,
        )
        # Thirty-odd saves in one transaction: one refresh event, one refetch.
        assert refreshes(example) == before + 1
        assert len(fetches) == 1
        assert await page.locator("#htmx-rows .pill.solved").count() >= 30


def test_the_vendored_files_are_the_npm_releases() -> None:
    vendor = EXAMPLE / "helpdesk" / "static" / "helpdesk" / "vendor"
    heads = {
        "htmx.min.js": "htmx 2.0.",
        "htmx-ext-sse.js": "htmx-ext-sse 2.2.",
        "htmx4/htmx.min.js": "htmx 4.0.",
        "htmx4/hx-sse.js": "hx-sse of htmx 4.0.",
    }
    for name, head in heads.items():
        assert head in (vendor / name).read_text().splitlines()[0], name
    for licence in ("htmx.LICENSE", "htmx-ext-sse.LICENSE", "htmx4/LICENSE"):
        assert "Zero-Clause BSD" in (vendor / licence).read_text().replace(
            "BSD Zero Clause", "Zero-Clause BSD"
        )
    assert os.path.getsize(vendor / "htmx4" / "htmx.min.js") > 30_000
