"""The test settings with django-notifications-community and its bridge
(``django_sse.contrib.notifications``), for tests/test_notifications_bridge.py."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "notifications", "django_sse.contrib.notifications"]
ROOT_URLCONF = "tests.urls_notifications"
DJANGO_NOTIFICATIONS_CONFIG = {"USE_JSONFIELD": True}
