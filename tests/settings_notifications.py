"""The test settings with django-notifications-community and its bridge
(``django_sse.contrib.notifications``), for tests/test_notifications_bridge.py.
``SSE_TEST_SOFT_DELETE=1`` turns on the package's soft delete."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "notifications", "django_sse.contrib.notifications"]
ROOT_URLCONF = "tests.urls_notifications"
DJANGO_NOTIFICATIONS_CONFIG = {
    "USE_JSONFIELD": True,
    "SOFT_DELETE": os.environ.get("SSE_TEST_SOFT_DELETE") == "1",
}
