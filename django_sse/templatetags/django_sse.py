"""``{% load django_sse %}``: template helpers for event streams."""

from __future__ import annotations

from django import template

from ..position import current_position

register = template.Library()


@register.simple_tag
def sse_position(*channels: str) -> str:
    """The current position of ``channels``, to open a stream with as
    ``?lastEventId=`` so that nothing published after the page was rendered is
    missed::

        {% sse_position "announcements" user_channel as position %}
    """
    return current_position(channels)
