"""System checks of the inbox and of the django-notifications bridge (E050-W059)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import conf


@register(Tags.compatibility)
def check_inbox(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    found: list[CheckMessage] = []
    if apps.is_installed("django_sse.contrib.notifications") and not apps.is_installed(
        "notifications"
    ):
        found.append(
            Error(
                "django_sse.contrib.notifications is installed but django-notifications "
                "('notifications') is not.",
                hint="pip install 'django-sse-notify[notifications]' and add 'notifications' "
                "to INSTALLED_APPS, or remove 'django_sse.contrib.notifications'.",
                id="django_sse.E050",
            )
        )
    if conf.SSE_STORE is None:
        found.append(
            Warning(
                "SSE_STORE is None: inbox changes are not kept for replay, so a tab that "
                "was offline shows a stale unread count until it reloads or the next change.",
                hint="Keep the default SSE_STORE ('django_sse.store.DatabaseStore').",
                id="django_sse.W050",
            )
        )
    return found
