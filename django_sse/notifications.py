"""``notify()``: a ``notification`` event on each user's private channel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import QuerySet

from .channels import user_channel
from .events import Event
from .publish import asend_event, send_event

__all__ = ["NOTIFICATION_EVENT", "anotify", "notify"]

NOTIFICATION_EVENT = "notification"


def _prepare(
    user_or_users: Any, message: Any, level: str, url: Any, extra: dict[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    if hasattr(user_or_users, "pk") and not isinstance(user_or_users, Iterable):
        users = [user_or_users]
    else:
        users = list(user_or_users)
    if not isinstance(level, str) or not level:
        raise ValueError(f"notification level must be a non-empty str, got {level!r}")
    data = {"message": str(message), "level": level, "url": None if url is None else str(url)}
    data.update(extra)
    return [user_channel(user) for user in users], data


def notify(
    user_or_users: Any, message: Any, *, level: str = "info", url: Any = None, **extra: Any
) -> list[Event]:
    """Send event ``notification`` with ``{"message", "level", "url", **extra}``
    to the private channel of a user, or of each user of an iterable or queryset.

    Follows the transaction like :func:`~django_sse.send_event`. Returns the events."""
    channels, data = _prepare(user_or_users, message, level, url, extra)
    return [send_event(channel, NOTIFICATION_EVENT, data) for channel in channels]


async def anotify(
    user_or_users: Any, message: Any, *, level: str = "info", url: Any = None, **extra: Any
) -> list[Event]:
    """Async twin of :func:`notify`."""
    if isinstance(user_or_users, QuerySet):
        user_or_users = [user async for user in user_or_users]
    channels, data = _prepare(user_or_users, message, level, url, extra)
    return [await asend_event(channel, NOTIFICATION_EVENT, data) for channel in channels]
