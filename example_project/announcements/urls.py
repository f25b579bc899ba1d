from __future__ import annotations

from django.urls import path

from . import views

app_name = "announcements"

urlpatterns = [
    path("", views.index, name="index"),
    path("send/", views.send, name="send"),
    path("inbox/", views.inbox, name="inbox"),
]
