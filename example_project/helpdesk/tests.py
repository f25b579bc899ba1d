"""Tests of the helpdesk's model hooks and streams, with django_sse's test helpers.

Run them with ``python manage.py test`` in ``example_project/``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase, TransactionTestCase

from django_sse import hooks
from django_sse.testing import capture_events, flush_refreshes, stream_reader

from .models import Ticket
from .sse import FRAGMENT_EVENT


class TicketHookTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.alice = User.objects.create_user("alice")
        cls.ticket = Ticket.objects.create(customer=cls.alice, title="Printer jam")

    def test_a_staff_reply_reaches_the_ticket_the_customer_and_staff(self) -> None:
        # TestCase never commits: run_on_commit=True publishes at the block's end,
        # flush_refreshes=True sends the debounced list refreshes then too.
        with capture_events(run_on_commit=True, flush_refreshes=True) as sent:
            self.ticket.status = Ticket.Status.PENDING
            self.ticket.reply = "Please restart it."
            self.ticket.save()
        for channel in (f"ticket:{self.ticket.pk}", f"customer:{self.alice.pk}", "tickets"):
            sent.assert_sent(
                channel, "helpdesk.ticket.updated", data__status="pending", data__pk=self.ticket.pk
            )
        fragment = sent.assert_sent(f"ticket:{self.ticket.pk}", FRAGMENT_EVENT)
        self.assertTrue(fragment.html)
        self.assertIn("Please restart it.", fragment.data)
        # The lists refetch their rows on this one, carrying nothing of the ticket.
        refresh = sent.assert_sent("tickets", "helpdesk.ticket.refresh", count=1)
        self.assertEqual(refresh.data, {"model": "helpdesk.ticket", "channel": "tickets"})

    def test_a_bulk_edit_refreshes_each_list_once(self) -> None:
        bob = get_user_model().objects.create_user("bob")
        with hooks.silenced():
            Ticket.objects.bulk_create(
                Ticket(customer=customer, title=f"#{n}")
                for n in range(50)
                for customer in (self.alice, bob)
            )
        staff = get_user_model().objects.create_superuser("staff")
        self.client.force_login(staff)
        with capture_events(run_on_commit=True, flush_refreshes=True) as sent:
            self.client.post(
                "/admin/helpdesk/ticket/",
                {
                    "action": "mark_solved",
                    "_selected_action": Ticket.objects.values_list("pk", flat=True),
                },
            )
        # 101 saves: an event each on "tickets", but one refresh per list.
        sent.assert_sent("tickets", "helpdesk.ticket.updated", count=101)
        for channel in ("tickets", f"customer:{self.alice.pk}", f"customer:{bob.pk}"):
            sent.assert_sent(channel, "helpdesk.ticket.refresh", count=1)

    def test_the_fragment_escapes_the_reply(self) -> None:
        with capture_events(run_on_commit=True) as sent:
            self.ticket.reply = "<script>alert(1)</script>"
            self.ticket.save()
        fragment = sent.assert_sent(f"ticket:{self.ticket.pk}", FRAGMENT_EVENT)
        self.assertNotIn("<script>", fragment.data)

    def test_nothing_is_sent_before_the_commit(self) -> None:
        with capture_events(flush_refreshes=True) as sent:
            self.ticket.save()
        sent.assert_nothing_sent()


class TicketRowsTests(TestCase):
    """The rows a refresh event makes a list refetch: the reader's own."""

    def test_a_customer_gets_her_rows_only(self) -> None:
        User = get_user_model()
        alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
        Ticket.objects.create(customer=alice, title="Alice's printer")
        Ticket.objects.create(customer=bob, title="Bob's export")
        self.client.force_login(bob)
        rows = self.client.get("/tickets/rows/").content.decode()
        self.assertIn("Bob&#x27;s export", rows)
        self.assertNotIn("Alice", rows)
        self.client.logout()
        self.assertEqual(self.client.get("/tickets/rows/").status_code, 302)  # to the login


class TicketStreamTests(TransactionTestCase):
    """The ticket page's stream, read in-process through the fast path."""

    async def test_the_customer_sees_the_change_and_nobody_else_may_listen(self) -> None:
        # Not inside capture_events(): send the list refreshes before the test
        # database goes, rather than from a background thread after it.
        self.addCleanup(flush_refreshes)
        User = get_user_model()
        alice = await User.objects.acreate(username="alice")
        bob = await User.objects.acreate(username="bob")
        ticket = await Ticket.objects.acreate(customer=alice, title="Printer jam")
        url = f"/sse/?channel=ticket:{ticket.pk}"
        async with stream_reader(url, user=bob) as refused:
            self.assertEqual(refused.status, 403)
        async with stream_reader(url, user=alice) as stream:
            ticket.status = Ticket.Status.SOLVED
            await ticket.asave()
            # The ticket channel has presence: its own events come too.
            event = await stream.next_event(name="helpdesk.ticket.updated")
            self.assertEqual(event.json["status_label"], "Solved")
            fragment = await stream.next_event(name=FRAGMENT_EVENT)
            self.assertEqual(fragment.event, FRAGMENT_EVENT)
