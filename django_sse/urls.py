from __future__ import annotations

from importlib.util import find_spec

from django.apps import apps
from django.urls import URLPattern, path

from . import views

app_name = "django_sse"

urlpatterns: list[URLPattern] = [
    path("", views.stream, name="stream"),
    path("token/", views.token, name="token"),
]

# The REST publish endpoint, only where Django REST framework is installed.
if find_spec("rest_framework") is not None:
    from .api import PublishView

    urlpatterns.append(path("publish/", PublishView.as_view(), name="publish"))

# The admin's Live page, where the admin is installed.
if apps.is_installed("django.contrib.admin"):
    from .live_view import live_page

    urlpatterns.append(path("live/", live_page, name="live"))
