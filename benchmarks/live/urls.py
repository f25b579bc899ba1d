from __future__ import annotations

from django.urls import path

from benchmarks.live.views import timed_send_view
from django_sse import send_event
from tests.urls import urlpatterns as project

urlpatterns = [*project, path("bench/send/", timed_send_view(send_event))]
