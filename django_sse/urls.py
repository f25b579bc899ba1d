from __future__ import annotations

from importlib.util import find_spec

from django.apps import apps
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

# The inbox endpoints over django-notifications, where its bridge is installed.
if apps.is_installed("django_sse.contrib.notifications"):
    from .contrib.notifications.backend import NotificationsBackend
    from .inbox_views import make_views

    _bridge = make_views(NotificationsBackend)
    urlpatterns += [
        path("notifications/", _bridge["items"], name="notifications"),
        path("notifications/count/", _bridge["count"], name="notifications-count"),
        path("notifications/read/", _bridge["mark_read"], name="notifications-read"),
        path("notifications/read-all/", _bridge["mark_all_read"], name="notifications-read-all"),
        path("notifications/delete/", _bridge["delete"], name="notifications-delete"),
    ]

# The REST publish endpoint, only where Django REST framework is installed.
if find_spec("rest_framework") is not None:
    from .api import PublishView

    urlpatterns.append(path("publish/", PublishView.as_view(), name="publish"))

# The admin's Live page, where the admin is installed.
if apps.is_installed("django.contrib.admin"):
    from .live_view import live_page

    urlpatterns.append(path("live/", live_page, name="live"))
