from __future__ import annotations

import django_eventstream  # type: ignore[import-untyped]
from django.urls import include, path
from django_eventstream import send_event  # type: ignore[import-untyped]

from benchmarks.live.views import timed_send_view
from benchmarks.peer import views

# The same paths as the django_sse test project, so one load client serves both.
urlpatterns = [
    path("sse/", include(django_eventstream.urls)),
    path("test/publish/", views.publish),
    path("test/stats/", views.stats),
    path("bench/send/", timed_send_view(send_event)),
]
