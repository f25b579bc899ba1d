"""``{% sse_inbox_badge %}`` and ``{% sse_inbox_list %}``, registered by the
``django_sse`` template library.

Both render from the database (right on first paint, no flash of "0") and
carry what the JS helper's ``DjangoSSE.inbox`` needs to keep them live. The
request's user, never a ``user`` context variable (a ``DetailView(model=User)``
sets that to the user being viewed). Anonymous users get an empty element.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from . import inbox
from .conf import conf

BADGE_TEMPLATE = "django_sse/inbox_badge.html"
LIST_TEMPLATE = "django_sse/inbox_list.html"


def _render(name: str, context: dict[str, Any]) -> SafeString:
    # Without the template's trailing newline: the tag sits inside inline markup.
    return mark_safe(render_to_string(name, context).strip())  # rendered with autoescape


def _user(context: template.Context) -> Any:
    request = context.get("request")
    user = getattr(request, "user", None)
    return user if getattr(user, "is_authenticated", False) else None


def sse_inbox_badge(context: template.Context, css_class: str = "sse-inbox-badge") -> SafeString:
    """The signed-in user's unread count, kept live: ``{% sse_inbox_badge %}``."""
    user = _user(context)
    return _render(
        BADGE_TEMPLATE,
        {
            "count": inbox.unread_count(user) if user is not None else 0,
            "css_class": css_class,
            "url": reverse("django_sse:inbox"),
            "user": user,
        },
    )


def sse_inbox_list(
    context: template.Context,
    limit: int | None = None,
    *,
    unread: bool = False,
    css_class: str = "sse-inbox-list",
    empty: str = "No notifications.",
) -> SafeString:
    """The latest items (``limit``, default ``SSE_INBOX_PAGE_SIZE``), kept live:
    ``{% sse_inbox_list 10 %}``. Text is escaped; links are the items' URLs,
    which ``notify()`` validated."""
    user = _user(context)
    size = min(int(limit or conf.SSE_INBOX_PAGE_SIZE), 100)
    if size < 1:
        raise template.TemplateSyntaxError("sse_inbox_list: limit must be at least 1")
    rows = list(inbox.items(user, unread=True if unread else None)[:size]) if user else []
    return _render(
        LIST_TEMPLATE,
        {
            "items": [inbox.item_data(item) for item in rows],
            "limit": size,
            "unread": unread,
            "css_class": css_class,
            "empty": empty,
            "url": reverse("django_sse:inbox"),
            "user": user,
        },
    )
