"""Admin actions: notify the selected users, broadcast the selected objects.

Add the mixins to your own ``ModelAdmin`` classes (see the "Admin" page of
the documentation). The only model registered is the inbox's
(``inbox_admin.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.auth import get_user_model
from django.core import checks
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import hooks
from .notifications import notify, validate_notification_url

__all__ = ["BroadcastMixin", "NotificationForm", "NotifyUsersMixin"]

logger = logging.getLogger("django_sse")

# Django's message levels, as documented for notify().
LEVELS = [(level, level.capitalize()) for level in ("debug", "info", "success", "warning", "error")]


class NotificationForm(forms.Form):
    message = forms.CharField(label=_("Message"), widget=forms.Textarea(attrs={"rows": 3}))
    level = forms.ChoiceField(label=_("Level"), choices=LEVELS, initial="info")
    # Not a URLField: a path such as "/tickets/42/" is the usual link.
    url = forms.CharField(
        label=_("Link"),
        max_length=500,
        required=False,
        help_text=_("A path on this site, such as /tickets/42/."),
    )

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        if url:
            try:
                validate_notification_url(url)
            except (TypeError, ValueError) as exc:
                raise forms.ValidationError(str(exc), code="unsafe_url") from None
        return url


class _ActionMixin:
    """Adds one action to a ``ModelAdmin``'s own, filtered by its permissions."""

    sse_action: str

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        model_admin: Any = self
        if model_admin.actions is None or IS_POPUP_VAR in request.GET:
            return actions
        func, name, description = model_admin.get_action(self.sse_action)
        checks = (getattr(self, f"has_{p}_permission") for p in func.allowed_permissions)
        if any(check(request) for check in checks):
            actions[name] = (func, name, description)
        return actions


class NotifyUsersMixin(_ActionMixin):
    """For the User admin: action ``send_notification``, with a form for the message."""

    sse_action = "send_notification"

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = super().check(**kwargs)  # type: ignore[misc]
        model = getattr(self, "model", None)
        user_model = get_user_model()
        if model is not None and not issubclass(model, user_model):
            errors.append(
                checks.Error(
                    f"NotifyUsersMixin is used by the admin of {model._meta.label}, which is "
                    f"not the user model ({user_model._meta.label}): its action would fail "
                    "for every selection.",
                    hint="Add NotifyUsersMixin to the admin of AUTH_USER_MODEL only; use "
                    "BroadcastMixin for other models.",
                    obj=type(self),
                    id="django_sse.E030",
                )
            )
        return errors

    @admin.action(
        description=_("Send a notification to the selected users"), permissions=["change"]
    )
    def send_notification(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponse | None:
        model_admin: Any = self
        form = NotificationForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            data = form.cleaned_data
            try:
                sent = notify(
                    queryset, data["message"], level=data["level"], url=data["url"] or None
                )
            except (TypeError, ValueError) as exc:
                # Objects that are not users (see check django_sse.E030).
                model_admin.message_user(request, _("Nothing was sent: %s") % exc, messages.ERROR)
                return None
            model_admin.message_user(
                request,
                ngettext(
                    "Sent a notification to %(count)d user.",
                    "Sent a notification to %(count)d users.",
                    len(sent),
                )
                % {"count": len(sent)},
                messages.SUCCESS,
            )
            return None
        opts = model_admin.model._meta
        context = {
            **model_admin.admin_site.each_context(request),
            "title": _("Send a notification"),
            "form": form,
            "queryset": queryset,
            "opts": opts,
            "action": self.sse_action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": model_admin.media + form.media,
        }
        return TemplateResponse(request, "django_sse/send_notification.html", context)


class BroadcastMixin(_ActionMixin):
    """Action ``broadcast_state``: send each selected object through its hooks as ``updated``."""

    sse_action = "broadcast_state"

    @admin.action(
        description=_("Broadcast the current state of the selected objects"),
        permissions=["change"],
    )
    def broadcast_state(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        model_admin: Any = self
        opts = model_admin.model._meta
        if not hooks.hooks_for(model_admin.model):
            model_admin.message_user(
                request,
                _("No hooks are registered for %(model)s: nothing was sent.")
                % {"model": opts.verbose_name_plural},
                messages.WARNING,
            )
            return
        objects = list(queryset)
        count = len(objects)
        try:
            # One transaction: an error on any object sends none (the events
            # go out on commit), instead of half a broadcast.
            with transaction.atomic(using=queryset.db):
                sent = hooks.send_for(objects, action="updated")
        except Exception as exc:
            # A channel template or payload of the app's that fails on some
            # object: the admin says so instead of answering 500.
            logger.exception("Broadcast of %s failed; nothing was sent", opts.label)
            model_admin.message_user(
                request,
                _("Nothing was sent: %(error)s") % {"error": f"{type(exc).__name__}: {exc}"},
                messages.ERROR,
            )
            return
        model_admin.message_user(
            request,
            ngettext(
                "Broadcast %(count)d %(model)s as %(events)d event(s).",
                "Broadcast %(count)d %(model)s as %(events)d event(s).",
                count,
            )
            % {
                "count": count,
                "model": opts.verbose_name if count == 1 else opts.verbose_name_plural,
                "events": len(sent),
            },
            messages.SUCCESS,
        )


# Registers InboxItemAdmin (admin.autodiscover() imports this module).
from . import inbox_admin  # noqa: E402, F401
