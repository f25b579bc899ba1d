"""Create the demo users (idempotent): staff ``admin``/``admin`` and ``alice``/``alice``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

# username, password, is_staff, is_superuser
DEMO_USERS: tuple[tuple[str, str, bool, bool], ...] = (
    ("admin", "admin", True, True),
    ("alice", "alice", False, False),
)


class Command(BaseCommand):
    help = "Create or reset the demo users: staff admin/admin and normal user alice/alice."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates users with well-known passwords; it only runs with DEBUG on."
            )
        User = get_user_model()
        with transaction.atomic():
            for username, password, is_staff, is_superuser in DEMO_USERS:
                lookup: dict[str, Any] = {User.USERNAME_FIELD: username}
                user, created = User._default_manager.get_or_create(**lookup)
                user.is_active = True
                user.is_staff = is_staff
                user.is_superuser = is_superuser
                user.set_password(password)
                user.save()
                role = "staff, superuser" if is_superuser else "staff" if is_staff else "user"
                self.stdout.write(
                    f"{'Created' if created else 'Updated'} {role:<16} "
                    f"username={username!r} password={password!r}"
                )
        self.stdout.write(
            self.style.SUCCESS(
                "Demo users ready. Log in at /accounts/login/ to send announcements."
            )
        )
