"""Create the demo users and tickets (idempotent) and print the users."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from django_sse import hooks
from helpdesk.models import Ticket

# username, password, is_staff, is_superuser
DEMO_USERS: tuple[tuple[str, str, bool, bool], ...] = (
    ("admin", "admin", True, True),
    ("alice", "alice", False, False),
    ("bob", "bob", False, False),
)
DEMO_TICKETS: tuple[tuple[str, str, str], ...] = (
    ("alice", "Cannot log in from my phone", "The app says my session expired."),
    ("alice", "Invoice shows the wrong address", "Please use the Lyon office."),
    ("bob", "Export to CSV is empty", "Since yesterday the file has only a header."),
)


class Command(BaseCommand):
    help = "Create or reset the demo users (admin, alice, bob) and their tickets."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates users with well-known passwords; it only runs with DEBUG on."
            )
        User = get_user_model()
        users = {}
        # Seeding is not news: no events for these saves.
        with transaction.atomic(), hooks.silenced(Ticket):
            for username, password, is_staff, is_superuser in DEMO_USERS:
                lookup: dict[str, Any] = {User.USERNAME_FIELD: username}
                user, created = User._default_manager.get_or_create(**lookup)
                user.is_active = True
                user.is_staff = is_staff
                user.is_superuser = is_superuser
                user.set_password(password)
                user.save()
                users[username] = user
                role = "staff, superuser" if is_superuser else "staff" if is_staff else "customer"
                self.stdout.write(
                    f"{'Created' if created else 'Updated'} {role:<16} "
                    f"username={username!r} password={password!r}"
                )
            for username, title, description in DEMO_TICKETS:
                Ticket.objects.get_or_create(
                    customer=users[username], title=title, defaults={"description": description}
                )
        self.stdout.write(
            self.style.SUCCESS(
                "Demo ready. Log in at /accounts/login/: customers see their tickets at "
                "/tickets/, staff change them in /admin/ and send notifications from the "
                "user list."
            )
        )
