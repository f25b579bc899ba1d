"""The test settings with Django's LoginRequiredMiddleware: every view needs a
login unless marked ``login_not_required``."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import MIDDLEWARE

MIDDLEWARE = [*MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
LOGIN_URL = "/test/js/login/"
