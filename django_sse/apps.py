from __future__ import annotations

from django.apps import AppConfig


class DjangoSSEConfig(AppConfig):
    name = "django_sse"
    verbose_name = "Server-Sent Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from . import (  # noqa: F401  (register the system checks)
            checks,
            metrics_checks,
            presence_checks,
            sessions,
            sqlite_checks,
        )

        autodiscover_modules("sse")
        self._connect_metrics()
        self._connect_revocation()

    def _connect_metrics(self) -> None:
        from django.core.signals import setting_changed

        from .metrics import get, reset

        setting_changed.connect(reset, dispatch_uid="django_sse.metrics_setting")
        # Metrics on: made now, so that a scrape before the first stream shows them.
        get()

    def _connect_revocation(self) -> None:
        from django.apps import apps

        if not apps.is_installed("django.contrib.auth"):
            return
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_delete, post_save

        from .revocation import on_logout, on_user_deleted, on_user_saved

        User = get_user_model()
        user_logged_out.connect(on_logout, dispatch_uid="django_sse.revoke_on_logout")
        post_save.connect(
            on_user_saved, sender=User, dispatch_uid="django_sse.revoke_on_deactivate"
        )
        post_delete.connect(
            on_user_deleted, sender=User, dispatch_uid="django_sse.revoke_on_delete"
        )
        self._connect_sessions()
        if apps.is_installed("rest_framework.authtoken"):
            self._connect_drf_tokens()

    def _connect_drf_tokens(self) -> None:
        """REST framework's logout deletes the Token: its streams end."""
        from django.apps import apps
        from django.db.models.signals import post_delete
        from rest_framework.authtoken.models import Token

        from .revocation import on_drf_token_deleted

        # One sender per model (proxies and subclasses send under their own):
        # a receiver for every sender would make every model's deletes slow
        # (Django fetches rows it could delete in one query when nobody listens).
        for model in apps.get_models():
            if issubclass(model, Token):
                post_delete.connect(
                    on_drf_token_deleted,
                    sender=model,
                    dispatch_uid=f"django_sse.drf_token_deleted.{model._meta.label}",
                )

    def _connect_sessions(self) -> None:
        """Tell a key rotation from a deleted session, as it happens (see sessions.py)."""
        from django.core.signals import request_started
        from django.db.models.signals import post_save, pre_delete

        from .sessions import (
            on_request_started,
            on_session_deleting,
            on_session_saved,
            session_model,
        )

        try:
            model = session_model()
        except (ImportError, LookupError, RuntimeError):
            return  # no usable session engine: nothing to follow
        if model is None:
            return
        post_save.connect(on_session_saved, sender=model, dispatch_uid="django_sse.session_saved")
        pre_delete.connect(
            on_session_deleting, sender=model, dispatch_uid="django_sse.session_deleting"
        )
        request_started.connect(on_request_started, dispatch_uid="django_sse.request_started")
