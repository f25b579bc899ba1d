from __future__ import annotations

from django.urls import path

from . import views

app_name = "helpdesk"

urlpatterns = [
    path("", views.ticket_list, name="list"),
    path("rows/", views.ticket_rows, name="rows"),
    path("<int:pk>/", views.ticket_detail, name="detail"),
    path("<int:pk>/htmx/", views.ticket_htmx, name="htmx"),
    path("<int:pk>/htmx4/", views.ticket_htmx4, name="htmx4"),
]
