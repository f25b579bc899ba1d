from __future__ import annotations

from django.apps import AppConfig


class DjangoSSEConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save
        from django.utils.module_loading import autodiscover_modules

        from . import checks  # noqa: F401  (registers the system checks)
        from .revocation import on_logout, on_user_saved

        # Streams close when their user logs out or is deactivated.
        user_logged_out.connect(on_logout, dispatch_uid="django_sse.revoke_on_logout")
        post_save.connect(
            on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="django_sse.revoke"
        )

        autodiscover_modules("sse")
