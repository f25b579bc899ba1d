"""Tests of the helpdesk's model hooks and streams, with django_sse's test helpers.

Run them with ``python manage.py test`` in ``example_project/``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase, TransactionTestCase

from django_sse.testing import capture_events, stream_reader

from .models import Ticket
from .sse import FRAGMENT_EVENT


class TicketHookTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.alice = User.objects.create_user("alice")
        cls.ticket = Ticket.objects.create(customer=cls.alice, title="Printer jam")

    def test_a_staff_reply_reaches_the_ticket_the_customer_and_staff(self) -> None:
        # TestCase never commits: run_on_commit=True publishes at the block's end.
        with capture_events(run_on_commit=True) as sent:
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

    def test_the_fragment_escapes_the_reply(self) -> None:
        with capture_events(run_on_commit=True) as sent:
            self.ticket.reply = "<script>alert(1)</script>"
            self.ticket.save()
        fragment = sent.assert_sent(f"ticket:{self.ticket.pk}", FRAGMENT_EVENT)
        self.assertNotIn("<script>", fragment.data)

    def test_nothing_is_sent_before_the_commit(self) -> None:
        with capture_events() as sent:
            self.ticket.save()
        sent.assert_nothing_sent()


class TicketStreamTests(TransactionTestCase):
    """The ticket page's stream, read in-process through the fast path."""

    async def test_the_customer_sees_the_change_and_nobody_else_may_listen(self) -> None:
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
            event = await stream.next_event()
            self.assertEqual(event.event, "helpdesk.ticket.updated")
            self.assertEqual(event.json["status_label"], "Solved")
            fragment = await stream.next_event()
            self.assertEqual(fragment.event, FRAGMENT_EVENT)
