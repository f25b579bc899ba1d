from __future__ import annotations

from django.urls import path

from . import views

app_name = "django_sse"

urlpatterns = [
    path("", views.stream, name="stream"),
    path("token/", views.token, name="token"),
]
