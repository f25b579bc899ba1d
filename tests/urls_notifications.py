from __future__ import annotations

from django.urls import include, path

from tests.urls import urlpatterns as base

urlpatterns = [
    *base,
    path("inbox/notifications/", include("notifications.urls", namespace="notifications")),
    path("test/notifications/", include("tests.testapp.notifications_views")),
]
