from __future__ import annotations

from importlib.util import find_spec

from django.urls import URLPattern, path

from . import inbox_views, views

app_name = "django_sse"

urlpatterns: list[URLPattern] = [
    path("", views.stream, name="stream"),
    path("token/", views.token, name="token"),
    path("inbox/", inbox_views.items, name="inbox"),
    path("inbox/count/", inbox_views.count, name="inbox-count"),
    path("inbox/read/", inbox_views.mark_read, name="inbox-read"),
    path("inbox/read-all/", inbox_views.mark_all_read, name="inbox-read-all"),
    path("inbox/delete/", inbox_views.delete, name="inbox-delete"),
]

# The REST publish endpoint, only where Django REST framework is installed.
if find_spec("rest_framework") is not None:
    from .api import PublishView

    urlpatterns.append(path("publish/", PublishView.as_view(), name="publish"))
