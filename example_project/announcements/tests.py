"""Tests of the announcements app, with django_sse's test helpers.

Run them with ``python manage.py test`` in ``example_project/``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase, TransactionTestCase

from django_sse.testing import capture_events, stream_reader

from .sse import CHANNEL, EVENT


class SendAnnouncementTests(TestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        User = get_user_model()
        cls.staff = User.objects.create_user("staff", is_staff=True)
        cls.customer = User.objects.create_user("customer")

    def test_staff_sends_an_announcement(self) -> None:
        self.client.force_login(self.staff)
        # The view's send_event waits for the commit, which TestCase never makes.
        with capture_events(run_on_commit=True) as sent:
            response = self.client.post("/send/", {"text": "Release 1.0 is out"})
        self.assertRedirects(response, "/")
        sent.assert_sent(CHANNEL, EVENT, data__text="Release 1.0 is out", data__author="staff")

    def test_a_customer_cannot_announce(self) -> None:
        self.client.force_login(self.customer)
        with capture_events(run_on_commit=True) as sent:
            response = self.client.post("/send/", {"text": "Free beer"})
        self.assertEqual(response.status_code, 403)
        sent.assert_nothing_sent()

    def test_an_empty_announcement_is_refused(self) -> None:
        self.client.force_login(self.staff)
        with capture_events(run_on_commit=True) as sent:
            response = self.client.post("/send/", {"text": ""})
        self.assertEqual(response.status_code, 400)
        sent.assert_nothing_sent()


class AnnouncementStreamTests(TransactionTestCase):
    """The page's stream, read in-process through the fast path."""

    async def test_an_open_page_receives_the_announcement(self) -> None:
        staff = await get_user_model().objects.acreate(username="staff", is_staff=True)
        await self.async_client.aforce_login(staff)
        async with stream_reader(f"/sse/?channel={CHANNEL}") as stream:
            await self.async_client.post("/send/", {"text": "Maintenance at noon"})
            event = await stream.next_event()
        self.assertEqual(event.event, EVENT)
        self.assertEqual(event.json["text"], "Maintenance at noon")
