"""``{% load django_sse %}``: template helpers for event streams.

``{% sse_channels "a" "b" %}`` declares channels a page listens to (any number
of times, in any template of the page); ``{% sse_script %}`` includes the
bundled JS helper with its configuration: the stream URL, the declared
channels plus the user's own channel, and the position the page was rendered
at. See docs/templatetags.rst.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString, mark_safe

from .. import inbox_tags
from ..channels import user_channel
from ..names import channel_name_error
from ..position import current_position

register = template.Library()

SCRIPT = "django_sse/django-sse.js"
CONFIG_ID = "django-sse-config"
# Kept in the context's bottom layer, which every {% extends %} and {% include %}
# of one render shares (render_context is reset per included template).
_DECLARED = "_django_sse_channels"


def _declared(context: template.Context) -> list[str]:
    bottom: dict[str, Any] = context.dicts[0]
    return bottom.setdefault(_DECLARED, [])  # type: ignore[no-any-return]


def _validated(names: tuple[Any, ...]) -> list[str]:
    out = []
    for name in names:
        if isinstance(name, list | tuple):
            out.extend(_validated(tuple(name)))
            continue
        error = channel_name_error(name)
        if error is not None:
            raise template.TemplateSyntaxError(f"sse_channels: {error}")
        out.append(name)
    return out


@register.simple_tag
def sse_position(*channels: str) -> str:
    """The current position of ``channels``, to open a stream with as
    ``?lastEventId=`` so that nothing published after the page was rendered is
    missed::

        {% sse_position "announcements" user_channel as position %}
    """
    return current_position(channels)


@register.simple_tag(takes_context=True)
def sse_channels(context: template.Context, *channels: Any) -> SafeString:
    """Declare channels this page listens to: ``{% sse_channels "a" ticket_channel %}``.

    Arguments are channel names or lists of them. Also writes them into the
    page, so the helper finds channels declared after ``{% sse_script %}``."""
    names = list(dict.fromkeys(_validated(channels)))
    declared = _declared(context)
    declared.extend(n for n in names if n not in declared)
    tag = '<script type="application/json">'
    # json_script escapes <, > and & so that no name can close the element.
    return mark_safe(json_script(names).replace(tag, tag[:-1] + " data-sse-channels>", 1))


@register.simple_tag(takes_context=True)
def sse_script(
    context: template.Context,
    *channels: Any,
    own_channel: bool = True,
    share: bool = True,
    url: str | None = None,
    autostart: bool = True,
    retry_base: int = 1000,
    retry_max: int = 30000,
) -> SafeString:
    """Include ``django-sse.js`` and its configuration.

    Streams the channels given here, those declared earlier with
    ``{% sse_channels %}``, and the signed-in user's own channel (the user of
    ``request``, which needs ``django.template.context_processors.request``)."""
    names = list(_declared(context))
    names.extend(n for n in _validated(channels) if n not in names)
    # The request's user, never a "user" context variable: a DetailView(model=User)
    # puts the *viewed* user there, whose private channel must not be subscribed.
    request = context.get("request")
    user = getattr(request, "user", None) if request is not None else None
    if own_channel and user is not None and getattr(user, "is_authenticated", False):
        own = user_channel(user)
        if own not in names:
            names.append(own)
    config = {
        "url": url or reverse("django_sse:stream"),
        "channels": names,
        "position": current_position(names) if names else "",
        "share": bool(share),
        "autostart": bool(autostart),
        "retryBase": int(retry_base),
        "retryMax": int(retry_max),
    }
    return format_html(
        '{}\n<script src="{}"></script>', json_script(config, CONFIG_ID), static(SCRIPT)
    )


# The inbox's tags live with the inbox (inbox_tags.py).
register.simple_tag(takes_context=True)(inbox_tags.sse_inbox_badge)
register.simple_tag(takes_context=True)(inbox_tags.sse_inbox_list)


@register.simple_tag(takes_context=True)
def sse_presence(
    context: template.Context,
    channel: str,
    *,
    field: str = "name",
    empty: str = "",
    others: bool = False,
    css_class: str = "sse-presence",
) -> SafeString:
    """A "who is here" list of the presence channel ``channel``, filled and
    kept live by the JS helper from the channel's presence events: one
    ``<li>`` per member holding its ``field`` as text, never markup.
    Declares the channel, as ``{% sse_channels %}``. ``others=True`` leaves
    the viewer out ("also viewing"); ``empty`` is shown when nobody is::

        {% sse_presence ticket_channel others=True empty="Nobody else" %}
    """
    from ..presence_api import member_key, presence_channel

    try:
        presence_channel(channel)
    except ValueError as exc:
        raise template.TemplateSyntaxError(f"sse_presence: {exc}") from None
    request = context.get("request")
    user = getattr(request, "user", None) if request is not None else None
    own = ""
    if others and user is not None and getattr(user, "is_authenticated", False):
        own = format_html(' data-sse-presence-self="{}"', member_key(channel, user))
    empty_attr = format_html(' data-sse-presence-empty="{}"', empty) if empty else ""
    return format_html(
        '<ul class="{}" data-sse-presence="{}" data-sse-presence-field="{}"{}{}></ul>{}',
        css_class,
        channel,
        field,
        own,
        empty_attr,
        sse_channels(context, channel),
    )
