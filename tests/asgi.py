from __future__ import annotations

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

# Static files too, so that browser tests load the bundled JS helper.
application = ASGIStaticFilesHandler(get_asgi_application())
