from __future__ import annotations

from django.apps import AppConfig


class NotificationsBridgeConfig(AppConfig):
    name = "django_sse.contrib.notifications"
    label = "django_sse_notifications"
    verbose_name = "django_sse for django-notifications"

    def ready(self) -> None:
        from django.apps import apps

        if not apps.is_installed("notifications"):
            return  # check django_sse.E050 says so
        from . import bridge

        bridge.connect()
