from __future__ import annotations

from importlib.util import find_spec

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
