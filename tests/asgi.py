"""The test project's ASGI application.

``SSE_TEST_DOOR=view`` serves streams through Django's view alone; otherwise
they take the fast path (``django_sse.asgi.fast_path``)."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

django_application = get_asgi_application()

from django_sse.asgi import fast_path  # noqa: E402  (after Django is set up)

application: Any = (
    django_application
    if os.environ.get("SSE_TEST_DOOR") == "view"
    else fast_path(django_application)
)
# Static files too, so that browser tests load the bundled JS helper.
application = ASGIStaticFilesHandler(application)
