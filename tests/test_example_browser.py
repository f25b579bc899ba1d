"""The example project in a real Chromium: what a new user sees after `make demo`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import TIMEOUT, chromium, requires_chromium, screenshot
from tests.servers import Server, example_shell, running_example

pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = [pytest.mark.server, requires_chromium]


@pytest.fixture(scope="module")
def example_server() -> Iterator[Server]:
    with running_example() as server:
        yield server


@pytest.fixture(scope="module")
def example_url(example_server: Server) -> str:
    return example_server.url


async def logged_in(
    browser: Any, base: str, username: str, path: str, *, streaming: bool = True
) -> Any:
    """A page of a new browser context, logged in as ``username`` and on ``path``
    (with its stream open, unless ``streaming`` is false: the admin has none)."""
    page = await (await browser.new_context(viewport={"width": 1000, "height": 640})).new_page()
    await page.goto(f"{base}/accounts/login/?next={path}")
    await page.fill("#id_username", username)
    await page.fill("#id_password", username)
    await page.click("form[action='/accounts/login/'] button[type=submit]")
    await page.wait_for_url(f"{base}{path}", timeout=TIMEOUT)
    if streaming:
        await live(page)
    return page


async def live(page: Any) -> None:
    await page.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)


async def ticket_pk(page: Any, title: str) -> int:
    href = await page.get_attribute(f"a.title:text-is('{title}')", "href")
    return int(href.strip("/").split("/")[-1])


async def change_ticket(staff: Any, base: str, pk: int, status: str, reply: str) -> None:
    await staff.goto(f"{base}/admin/helpdesk/ticket/{pk}/change/")
    await staff.select_option("#id_status", status)
    await staff.fill("#id_reply", reply)
    await staff.click("input[name=_save]")
    await staff.wait_for_selector(".messagelist .success", timeout=TIMEOUT)


async def test_an_announcement_sent_by_staff_appears_live(example_url: str) -> None:
    async with chromium() as browser:
        reader = await (await browser.new_context()).new_page()
        await reader.goto(example_url + "/")
        await reader.wait_for_selector("#status[data-sse-state='open']", timeout=TIMEOUT)
        assert await reader.text_content("#status") == "Live"

        staff = await logged_in(browser, example_url, "admin", "/")
        text = "Release 1.0 is out <b>today</b>"
        await staff.fill("#id_text", text)
        await staff.click("form[action$='send/'] button[type=submit]")

        item = reader.locator("#feed li", has_text=text)
        await item.wait_for(timeout=TIMEOUT)
        # Sent as text, shown as text: the markup is not interpreted.
        assert await reader.locator("#feed b").count() == 0
        # Every page of the site shows the latest announcement in its bar.
        await reader.locator("#announcement-bar", has_text="Release 1.0").wait_for(timeout=TIMEOUT)


async def test_a_staff_change_in_the_admin_shows_live_on_the_customers_pages(
    example_url: str,
) -> None:
    async with chromium() as browser:
        alice = await logged_in(browser, example_url, "alice", "/tickets/")
        pk = await ticket_pk(alice, "Cannot log in from my phone")
        assert await alice.locator("a.title").count() == 2  # her tickets only
        detail = await alice.context.new_page()
        await detail.goto(f"{example_url}/tickets/{pk}/")
        await live(detail)

        # Per-object permission: Bob can neither open Alice's ticket nor stream it.
        bob = await logged_in(browser, example_url, "bob", "/tickets/")
        denied = await bob.goto(f"{example_url}/tickets/{pk}/")
        assert denied is not None and denied.status == 404
        stream = await bob.context.request.get(f"{example_url}/sse/?channel=ticket:{pk}")
        assert stream.status == 403

        staff = await logged_in(browser, example_url, "admin", "/admin/", streaming=False)
        await change_ticket(staff, example_url, pk, "pending", "Please update the app to 2.3.")
        await detail.locator("#ticket-pill", has_text="Waiting for you").wait_for(timeout=TIMEOUT)
        assert await detail.text_content("#ticket-reply") == "Please update the app to 2.3."
        row = alice.locator(f"tr[data-ticket='{pk}'] .pill")
        await row.filter(has_text="Waiting for you").wait_for(timeout=TIMEOUT)
        await screenshot(detail, "ticket-detail")
        await screenshot(alice, "ticket-list")


async def test_the_admin_notification_action_shows_a_toast_and_an_unread_badge(
    example_url: str,
) -> None:
    async with chromium() as browser:
        bob = await logged_in(browser, example_url, "bob", "/tickets/")
        alice = await logged_in(browser, example_url, "alice", "/tickets/")

        staff = await logged_in(browser, example_url, "admin", "/admin/auth/user/", streaming=False)
        row = staff.locator("#result_list tr", has_text="bob")
        await row.locator("input[name=_selected_action]").check()
        await staff.select_option("select[name=action]", "send_notification")
        await staff.click("button[name=index]")
        await staff.fill("#id_message", "Your export is fixed")
        await staff.select_option("#id_level", "success")
        await staff.click("input[name=apply]")
        await staff.wait_for_selector(".messagelist .success", timeout=TIMEOUT)

        await bob.locator(".toast.success", has_text="Your export is fixed").wait_for(
            timeout=TIMEOUT
        )
        assert await bob.text_content("#unread") == "1"
        await screenshot(bob, "notification-toast")
        # Alice's stream carried nothing for her: her badge stays hidden at 0.
        await staff.goto(f"{example_url}/")
        await staff.fill("#id_text", "after the notification")
        await staff.click("form[action$='send/'] button[type=submit]")
        await alice.locator("#announcement-bar", has_text="after the notification").wait_for(
            timeout=TIMEOUT
        )
        assert await alice.text_content("#unread") == "0"
        assert await alice.locator(".toast").count() == 0

        # The notification was kept: the badge survives a reload, and the Inbox
        # page lists it until it is read.
        await bob.reload()
        await bob.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
        assert await bob.text_content("#unread") == "1"
        await bob.click("a[href='/inbox/']")
        item = bob.locator(".sse-inbox-item[data-read='false']", has_text="Your export is fixed")
        await item.wait_for(timeout=TIMEOUT)
        await bob.wait_for_selector("html[data-sse-state='open']", timeout=TIMEOUT)
        await screenshot(bob, "inbox")
        await bob.click("#read-all")
        await bob.locator(".sse-inbox-item[data-read='true']").first.wait_for(timeout=TIMEOUT)
        await bob.wait_for_function(
            "document.querySelector('#unread .badge').dataset.count === '0'", timeout=TIMEOUT
        )


async def test_htmx_swaps_the_server_rendered_fragment(example_url: str) -> None:
    async with chromium() as browser:
        bob = await logged_in(browser, example_url, "bob", "/tickets/")
        pk = await ticket_pk(bob, "Export to CSV is empty")
        # htmx's SSE extension signals an open stream with the htmx:sseOpen event.
        await bob.add_init_script(
            "document.addEventListener('htmx:sseOpen', () => { window.htmxSseOpen = true; })"
        )
        await bob.goto(f"{example_url}/tickets/{pk}/htmx/")
        await bob.wait_for_function("window.htmxSseOpen === true", timeout=TIMEOUT)
        staff = await logged_in(browser, example_url, "admin", "/admin/", streaming=False)
        await change_ticket(staff, example_url, pk, "solved", "Fixed in release 4.1.")
        target = bob.locator("#htmx-target .reply", has_text="Fixed in release 4.1.")
        await target.wait_for(timeout=TIMEOUT)
        assert await bob.text_content("#htmx-target .pill") == "Solved"
        await screenshot(bob, "htmx-page")


async def test_eight_tabs_of_the_helpdesk_stay_live(example_url: str) -> None:
    async with chromium() as browser:
        first = await logged_in(browser, example_url, "alice", "/tickets/")
        pk = await ticket_pk(first, "Invoice shows the wrong address")
        # Past the six HTTP/1.1 connections per origin: the tabs share one stream.
        tabs = [first]
        for _ in range(7):
            tab = await first.context.new_page()
            await tab.goto(f"{example_url}/tickets/")
            tabs.append(tab)
        for tab in tabs:
            await live(tab)
        staff = await logged_in(browser, example_url, "admin", "/admin/", streaming=False)
        await change_ticket(staff, example_url, pk, "solved", "Address corrected.")
        for tab in tabs:
            pill = tab.locator(f"tr[data-ticket='{pk}'] .pill", has_text="Solved")
            await pill.wait_for(timeout=TIMEOUT)
        leaders = [await tab.evaluate("DjangoSSE.connection.leader") for tab in tabs]
        assert leaders.count(True) == 1


async def test_a_toast_never_links_a_javascript_url_nor_runs_markup(example_url: str) -> None:
    async with chromium() as browser:
        bob = await logged_in(browser, example_url, "bob", "/tickets/")
        # Events delivered through the helper as the stream would (the server
        # refuses such URLs before they are sent; the page must not trust that).
        hostile = [
            {"message": "<img src=x onerror='window.xss=1'>", "level": "info", "url": "/t/"},
            {"message": "click", "level": "info", "url": "javascript:window.xss=2"},
            {"message": "data", "level": "info", "url": "data:text/html,<script>1</script>"},
            {"message": "site", "level": "info", "url": "https://example.com/x"},
        ]
        for n, data in enumerate(hostile):
            await bob.evaluate(
                "([raw, id]) => DjangoSSE.connection.deliver('notification', raw, id)",
                [json.dumps(data), f"hostile-{n}"],
            )
        toasts = bob.locator("#toasts .toast")
        await toasts.nth(3).wait_for(timeout=TIMEOUT)
        assert await toasts.all_text_contents() == [d["message"] for d in hostile]
        hrefs = await bob.eval_on_selector_all(
            "#toasts .toast", "els => els.map(e => e.getAttribute('href'))"
        )
        # Off-site links are not followed either: a toast is the site's own voice.
        assert hrefs == [f"{example_url}/t/", None, None, None]
        await toasts.nth(1).click()
        assert await bob.evaluate("window.xss") is None
        assert await bob.locator("#toasts img").count() == 0


ROWS = "/tickets/rows/"


async def solve_in_bulk(browser: Any, base: str, customer: str, reader: Any) -> list[Any]:
    """As staff, mark every ticket of ``customer`` solved with the admin's bulk
    action; wait until ``reader`` has refetched its rows, and return the
    refetches it made (the list keeps growing)."""
    fetches: list[Any] = []
    reader.on("request", lambda r: fetches.append(r) if r.url.endswith(ROWS) else None)
    staff = await logged_in(browser, base, "admin", "/admin/", streaming=False)
    await staff.goto(f"{base}/admin/helpdesk/ticket/?q={customer}")
    await staff.check("#action-toggle")
    await staff.select_option("select[name=action]", "mark_solved")
    async with reader.expect_response(lambda r: r.url.endswith(ROWS)) as answer:
        await staff.click("button[name=index]")
    assert (await answer.value).status == 200
    await staff.wait_for_selector(".messagelist .success", timeout=TIMEOUT)
    return fetches


BULK = 60
NEW_CUSTOMER = f"""
from django.contrib.auth import get_user_model
from django_sse import hooks
from helpdesk.models import Ticket
carol = get_user_model().objects.create_user("carol", password="carol")
with hooks.silenced():
    Ticket.objects.bulk_create(Ticket(customer=carol, title=str(n)) for n in range({BULK}))
"""
REFRESHES = """
from django.contrib.auth import get_user_model
from django_sse.models import StoredEvent
carol = get_user_model().objects.get(username="carol")
rows = StoredEvent.objects.filter(channel=f"customer:{carol.pk}")
print(rows.filter(name="helpdesk.ticket.refresh").count())
"""


async def test_a_bulk_edit_in_the_admin_refreshes_the_list_once(
    example_server: Server,
) -> None:
    base = example_server.url
    example_shell(example_server, NEW_CUSTOMER)
    async with chromium() as browser:
        carol = await logged_in(browser, base, "carol", "/tickets/")
        assert await carol.locator("#ticket-rows .pill.open").count() == BULK
        fetches = await solve_in_bulk(browser, base, "carol", carol)
        await carol.wait_for_function(
            f"document.querySelectorAll('#ticket-rows .pill.solved').length === {BULK}",
            timeout=TIMEOUT,
        )
        # Sixty saves, one refresh event on her channel, so one refetch of the rows.
        assert example_shell(example_server, REFRESHES).split()[-1] == "1"
        assert len(fetches) == 1


async def test_the_ticket_page_shows_the_other_viewers_live(example_url: str) -> None:
    async with chromium() as browser:
        alice = await logged_in(browser, example_url, "alice", "/tickets/")
        pk = await ticket_pk(alice, "Cannot log in from my phone")
        await alice.goto(f"{example_url}/tickets/{pk}/")
        await live(alice)
        viewers = alice.locator("ul.viewers li")
        await viewers.filter(has_text="nobody else").wait_for(timeout=TIMEOUT)
        # Support opens the same ticket in another browser: each sees the other.
        staff = await logged_in(browser, example_url, "admin", f"/tickets/{pk}/")
        await alice.locator("ul.viewers li", has_text="admin").wait_for(timeout=TIMEOUT)
        await staff.locator("ul.viewers li", has_text="alice").wait_for(timeout=TIMEOUT)
        assert await viewers.count() == 1  # the viewer is not listed to herself
        await screenshot(alice, "ticket-viewers")
        await staff.context.close()
        await viewers.filter(has_text="nobody else").wait_for(timeout=TIMEOUT)
