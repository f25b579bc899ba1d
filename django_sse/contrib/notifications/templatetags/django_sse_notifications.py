"""``{% load django_sse_notifications %}``: drop-ins for django-notifications'
``live_notify_badge``, ``live_notify_list`` and ``register_notify_callbacks``
that stay live over the page's stream (``{% sse_script %}``) instead of polling."""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from ..backend import NotificationsBackend

register = template.Library()


def _user(context: template.Context) -> Any:
    user = getattr(context.get("request"), "user", None)
    return user if getattr(user, "is_authenticated", False) else None


@register.simple_tag(takes_context=True)
def live_notify_badge(
    context: template.Context, badge_class: str = "live_notify_badge"
) -> SafeString:
    """The unread count, right on first paint and kept live."""
    user = _user(context)
    if user is None:
        return mark_safe("")
    html = render_to_string(
        "django_sse/inbox_badge.html",
        {
            "count": NotificationsBackend.unread_count(user),
            "css_class": badge_class,
            "url": reverse("django_sse:notifications"),
            "source": "notifications",
        },
    )
    return mark_safe(html.strip())  # rendered with autoescape


@register.simple_tag(takes_context=True)
def live_notify_list(
    context: template.Context, list_class: str = "live_notify_list", fetch: int = 5
) -> SafeString:
    """The latest unread notifications (``fetch``, as the package's own tag), kept live."""
    user = _user(context)
    # The endpoint's most (the JS refetches with data-limit): not more than 100.
    size = max(1, min(int(fetch), 100))
    rows = NotificationsBackend.page(user, None, size, True)["items"] if user else []
    html = render_to_string(
        "django_sse/inbox_list.html",
        {
            "items": rows,
            "limit": size,
            "unread": True,
            "css_class": list_class,
            "empty": "",
            "url": reverse("django_sse:notifications"),
            "source": "notifications",
        },
    )
    return mark_safe(html.strip())


@register.simple_tag
def register_notify_callbacks(*args: Any, **kwargs: Any) -> str:
    """Nothing: without its configuration, the package's notify.js never polls.
    Use ``DjangoSSE.inbox.on(...)`` for callbacks."""
    return ""
