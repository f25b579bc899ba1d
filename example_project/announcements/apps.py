from __future__ import annotations

from django.apps import AppConfig


class AnnouncementsConfig(AppConfig):
    name = "announcements"
    verbose_name = "Announcements"
    default_auto_field = "django.db.models.BigAutoField"
