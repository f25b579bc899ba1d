from __future__ import annotations

from django.apps import AppConfig


class DjangoSSEConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import checks  # noqa: F401  (registers the system checks)

        autodiscover_modules("sse")
        self._connect_revocation()

    def _connect_revocation(self) -> None:
        from django.apps import apps

        if not apps.is_installed("django.contrib.auth"):
            return
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save

        from .revocation import on_logout, on_user_saved

        user_logged_out.connect(on_logout, dispatch_uid="django_sse.revoke_on_logout")
        post_save.connect(
            on_user_saved, sender=get_user_model(), dispatch_uid="django_sse.revoke_on_deactivate"
        )
