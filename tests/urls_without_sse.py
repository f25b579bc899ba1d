"""A URLconf that does not include django_sse.urls."""

from __future__ import annotations

from django.urls import path

from tests.testapp import views

urlpatterns = [path("test/stats/", views.stats)]
