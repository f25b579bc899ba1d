"""ASGI entry point: ``python -m daphne example_project.asgi:application``."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

# Sets Django up (and so imports django_sse); do it before importing anything else.
django_application = get_asgi_application()

application: Any = django_application
if settings.DEBUG:
    # Serve the admin's CSS and JS when run straight under daphne, as runserver does.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(django_application)

from django_sse.asgi import fast_path  # noqa: E402  (after Django is set up)

# Streams skip Django's per-request thread; everything else is Django as usual.
application = fast_path(application)
